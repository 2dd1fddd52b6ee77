export { buildDockerfile, detectEngines, pickEngine, ENGINES, NO_ENGINE_HINT, type BuiltImage, type DockerfileRequest, type EngineName, type EngineOptions } from "./engines.js";

import { DockerfilePlugin } from "./plugin.js";

export { DockerfilePlugin, PLUGIN_NAME, KIND, IMAGE_KIND } from "./plugin.js";
export { buildDockerfile, detectEngines, pickEngine, ENGINES, NO_ENGINE_HINT, type BuiltImage, type DockerfileRequest, type EngineName, type EngineOptions } from "./engines.js";

export default DockerfilePlugin;

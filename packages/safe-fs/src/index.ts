export { TEMP_PREFIX, hostTag, tempName, parseTempName, processAlive, reapStaleTemps, removeOwnTempsSync, removeOwnTempsAfterExit, type TempNameParts, type ReapOptions, type ReapResult } from "./temp.js";
export { SafeFsError, assertRegularFile, readRegularFile, describeKind, type ReadRegularOptions } from "./special.js";

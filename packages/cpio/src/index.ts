export type { CpioEntry, CpioEntryType } from "./entry.js";
export { TYPE_BITS, typeFromMode } from "./entry.js";
export { CpioError } from "./errors.js";
export { writeNewc, validateEntry, type WriteOptions } from "./writer.js";
export { builtinCompressors, gzip, none, type Compressor } from "./compress.js";

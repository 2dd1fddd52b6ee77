export { writeExt4, defaultJournalBlocks, formatUuid, BLOCK_SIZE, type Ext4Options, type Ext4Result } from "./writer.js";
export { TYPE_BITS, DIRENT_TYPE, type Ext4Entry, type Ext4EntryType } from "./entry.js";
export { Ext4Error } from "./errors.js";
export { crc32c } from "./crc32c.js";

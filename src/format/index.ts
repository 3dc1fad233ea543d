// The image format v1: records (types), writer, reader. See formats/v1/spec.md.
export * from './records.js';
export { ImageWriter, FORMAT_VERSION, MAGIC, encodeRecord, type PayloadMeta } from './writer.js';
export { openImage, DEFER_MIN_BYTES, readPayload, streamPayload, copyPayload, checkKernel, type Image, type OpenOptions } from './reader.js';
export { FileBytes, DEFAULT_LIMITS, type DecodeLimits } from './cbor.js';

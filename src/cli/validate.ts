// handoff validate IMAGE: full verification of an image (framing, schema, digest, references,
// ownership), exactly what restore does before touching anything. Exit 0 valid, 3 invalid.
import { EXIT, ImageError, UsageError } from '../errors.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'validate',
  summary: 'verify an image: structure, schema, SHA-256, references, ownership',
  help: `Usage: handoff validate IMAGE [--json]

Checks everything restore checks before it starts: the file is root-owned and not writable by
group/others (nor is its directory), every CBOR item is well formed and within limits, every
record matches the format v1 JSON Schema, page payloads are page-aligned, the SHA-256 in the
trailer matches, and records refer to each other consistently. The running kernel is not
compared with the image's minimum kernel (restore does that).

Exit 0 when valid, 3 when invalid (the error code and byte offset are printed).
  --json   print {valid, ...} as JSON`,
  options: { json: { type: 'boolean' } },
  async run(values, positionals) {
    if (positionals.length !== 1) throw new UsageError('validate: exactly one IMAGE expected');
    const path = positionals[0]!;
    const { openImage } = await import('../format/reader.js');
    try {
      const img = openImage(path);
      const summary = {
        valid: true,
        path,
        bytes: img.size,
        version: `${img.header.version.major}.${img.header.version.minor}`,
        records: img.records.length,
        skippedOptional: img.skipped.length,
        sha256: Buffer.from(img.trailer.sha256).toString('hex'),
      };
      img.close();
      if (values.json) out(JSON.stringify(summary, null, 2));
      else out(`${path}: valid (format ${summary.version}, ${summary.records} records${summary.skippedOptional ? `, ${summary.skippedOptional} unknown optional skipped` : ''}, ${summary.bytes} bytes, sha256 ${summary.sha256})`);
      return EXIT.ok;
    } catch (err) {
      if (!(err instanceof ImageError)) throw err;
      const offset = err.details.offset;
      if (values.json) out(JSON.stringify({ valid: false, path, code: err.code, offset: offset ?? null, message: err.message }, null, 2));
      else out(`${path}: invalid: ${err.code}${offset === undefined ? '' : ` at offset ${offset}`}: ${err.message}`);
      return EXIT.image;
    }
  },
};

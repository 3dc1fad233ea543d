// Loads formats/v1/schema/*.json into ajv (strict mode) and validates decoded records.
// JSON Schema has no bigint or byte-string types, so three keywords are added:
//   u64: true      unsigned 64-bit integer; coerced to bigint (registers, masks, capabilities)
//   address: true  unsigned 64-bit integer that must be exact as a double; coerced to number
//                  (every page-aligned address is, including the vsyscall page's)
//   bstr: {size?, maxSize?, payload?}  byte string; with payload it must be left in the file
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction, type ErrorObject } from 'ajv';
import { FileBytes } from './cbor.js';
import { HandoffError } from '../errors.js';

const U64_MAX = (1n << 64n) - 1n;

/** formats/v1 of this installation, found from this module's location (src/ or dist/src/). */
export function formatDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'formats', 'v1');
    if (existsSync(join(candidate, 'schema'))) return candidate;
    dir = dirname(dir);
  }
  throw new HandoffError('E_INSTALL', 'formats/v1/schema not found next to the handoff installation (incomplete install)', { path: fileURLToPath(import.meta.url) });
}

type DataCxt = { parentData: Record<string | number, unknown>; parentDataProperty: string | number } | undefined;

function setInParent(cxt: DataCxt, value: unknown): void {
  if (cxt) cxt.parentData[cxt.parentDataProperty] = value;
}

/**
 * The reader's ajv. Checking our own schema files against the JSON Schema meta-schema
 * (validateSchema) and optimizing the generated code took ~50 ms of every command that opens
 * an image, for files that only change with the code: `checked` (the tests) turns both on.
 */
function makeAjv(checked = false): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: false, validateSchema: checked, code: { optimize: checked } });
  ajv.addKeyword({
    keyword: 'u64',
    schemaType: 'boolean',
    modifying: true,
    errors: false,
    validate: (_schema: boolean, data: unknown, _parent?: unknown, cxt?: DataCxt) => {
      if (typeof data === 'number' && Number.isSafeInteger(data) && data >= 0) {
        setInParent(cxt, BigInt(data));
        return true;
      }
      return typeof data === 'bigint' && data >= 0n && data <= U64_MAX;
    },
  });
  ajv.addKeyword({
    keyword: 'address',
    schemaType: 'boolean',
    modifying: true,
    errors: false,
    validate: (_schema: boolean, data: unknown, _parent?: unknown, cxt?: DataCxt) => {
      if (typeof data === 'number') return Number.isSafeInteger(data) && data >= 0;
      if (typeof data !== 'bigint' || data < 0n || data > U64_MAX || BigInt(Number(data)) !== data) return false;
      setInParent(cxt, Number(data));
      return true;
    },
  });
  ajv.addKeyword({
    keyword: 'bstr',
    schemaType: 'object',
    metaSchema: {
      type: 'object',
      properties: { size: { type: 'integer' }, maxSize: { type: 'integer' }, payload: { type: 'boolean' } },
      additionalProperties: false,
    },
    errors: false,
    validate: (schema: { size?: number; maxSize?: number; payload?: boolean }, data: unknown) => {
      const isRef = data instanceof FileBytes;
      if (schema.payload ? !isRef : !(data instanceof Uint8Array)) return false;
      const length = (data as { length: number }).length;
      if (schema.size !== undefined && length !== schema.size) return false;
      if (schema.maxSize !== undefined && length > schema.maxSize) return false;
      return true;
    },
  });
  const dir = join(formatDir(), 'schema');
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    ajv.addSchema(JSON.parse(readFileSync(join(dir, name), 'utf8')) as object);
  }
  return ajv;
}

/**
 * Validators by record kind (including "header" and "trailer"), each compiled the first time
 * it is asked for: compiling all of them costs ~150 ms, and an image uses about half the kinds.
 */
export class Validators {
  private readonly fns = new Map<string, ValidateFunction>();

  constructor(private readonly ajv: Ajv, private readonly kinds: ReadonlySet<string>) {}

  has(kind: string): boolean {
    return this.kinds.has(kind);
  }

  get(kind: string): ValidateFunction | undefined {
    if (!this.kinds.has(kind)) return undefined;
    let fn = this.fns.get(kind);
    if (!fn) {
      try {
        fn = this.ajv.getSchema(`urn:handoff:v1:${kind}`)!;
      } catch (err) {
        throw new HandoffError('E_INSTALL', `the installed schema of "${kind}" records does not compile: ${(err as Error).message}`, { kind }, { cause: err });
      }
      this.fns.set(kind, fn);
    }
    return fn;
  }

  /** Compiles every kind now (a test of the installation). */
  all(): Map<string, ValidateFunction> {
    return new Map([...this.kinds].map((k) => [k, this.get(k)!]));
  }
}

let loaded: Validators | undefined;

/** The validators of formats/v1/schema (loaded once; an incomplete installation throws E_INSTALL). */
export function validators(): Validators {
  if (loaded) return loaded;
  const ajv = makeAjv();
  const kinds = new Set(schemaNames().filter((k) => k !== 'common'));
  loaded = new Validators(ajv, kinds);
  return loaded;
}

/**
 * Every schema file loaded with the meta-schema check on and every kind compiled with optimized
 * code (what `validators()` skips for speed); throws on the first problem. For the tests.
 */
export function checkSchemaFiles(): string[] {
  const ajv = makeAjv(true);
  const kinds = schemaNames();
  for (const kind of kinds) ajv.getSchema(`urn:handoff:v1:${kind}`);
  return kinds;
}

/** The schema files of formats/v1/schema, by name without ".json" (record kinds and "common"). */
function schemaNames(): string[] {
  return readdirSync(join(formatDir(), 'schema'))
    .filter((n) => n.endsWith('.json'))
    .map((n) => n.replace(/\.json$/, ''));
}

export function describeErrors(errors: ErrorObject[] | null | undefined): string {
  if (!errors?.length) return 'invalid';
  return errors
    .slice(0, 3)
    .map((e) => `${e.instancePath || '/'} ${e.keyword === 'u64' || e.keyword === 'address' || e.keyword === 'bstr' ? `is not a valid ${e.keyword}${e.keyword === 'bstr' ? ' ' + JSON.stringify(e.params) : ''}` : e.message}`)
    .join('; ');
}

// The one place that loads ffi-rs and libhandoff.so. Everything else in src/native builds
// typed functions with `bind`; nothing outside src/native imports ffi-rs.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeError } from '../errors.js';

const require = createRequire(import.meta.url);
type Ffi = typeof import('ffi-rs');

const LIBRARY = 'libhandoff';
let ffi: Ffi | undefined;
let loadedFrom: string | undefined;

/** Project root: two levels above src/native (or dist/src/native). */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Every place libhandoff.so may live, in the order they are tried. */
export function candidatePaths(): string[] {
  const paths: string[] = [];
  if (process.env.HANDOFF_NATIVE_LIB) paths.push(process.env.HANDOFF_NATIVE_LIB);
  paths.push(join(projectRoot(), 'native', 'build', 'libhandoff.so'));
  paths.push('/usr/lib/handoff/libhandoff.so');
  return paths;
}

/** Directory holding the native helper programs (the restore stub...). */
export function nativeBuildDir(): string {
  return dirname(libraryPath());
}

export function libraryPath(): string {
  ensureLoaded();
  return loadedFrom!;
}

function ensureLoaded(): Ffi {
  if (ffi) return ffi;
  const tried: string[] = [];
  let lib: Ffi;
  try {
    lib = require('ffi-rs') as Ffi;
  } catch (cause) {
    throw new NativeError('E_NATIVE_LOAD', 'cannot load the ffi-rs package (run npm install)', {}, cause);
  }
  for (const path of candidatePaths()) {
    if (!existsSync(path)) {
      tried.push(`${path}: not found`);
      continue;
    }
    try {
      lib.open({ library: LIBRARY, path });
      ffi = lib;
      loadedFrom = path;
      return lib;
    } catch (cause) {
      tried.push(`${path}: ${cause instanceof Error ? cause.message : String(cause)}`);
    }
  }
  throw new NativeError('E_NATIVE_LOAD', `libhandoff.so not loaded; tried:\n  ${tried.join('\n  ')}\n(build it with: npm run build)`, { tried });
}

/** The ffi-rs type tags our bindings use. */
export const T = {
  i32: 1,
  i64: 8,
  u64: 12,
  bigint: 16,
  u8array: 10,
  string: 0,
  void: 7,
  i32array: 3,
} as const;
type Tag = (typeof T)[keyof typeof T];
type JsOf<X extends Tag> = X extends 16 ? bigint : X extends 10 ? Buffer : X extends 0 ? string : X extends 7 ? undefined : X extends 3 ? number[] : number;
type Args<P extends readonly Tag[]> = { [K in keyof P]: P[K] extends Tag ? JsOf<P[K]> : never };

/**
 * Binds an exported C function. Calls are synchronous on the calling thread (ptrace
 * requests must come from the tracer thread), about 3-6 us each: loops belong in C.
 */
export function bind<R extends Tag, const P extends readonly Tag[]>(name: string, ret: R, params: P): (...args: Args<P>) => JsOf<R> {
  let call: ((args: unknown[]) => unknown) | undefined;
  return (...args: Args<P>) => {
    if (!call) {
      const lib = ensureLoaded();
      call = (values: unknown[]) => lib.load({ library: LIBRARY, funcName: name, retType: ret as never, paramsType: params as never, paramsValue: values as never });
    }
    return call(args as unknown[]) as JsOf<R>;
  };
}

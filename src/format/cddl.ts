// A validator for the subset of CDDL (RFC 8610) that formats/v1/image.cddl uses, and a typed
// CBOR decoder to feed it. Typed, because CDDL tells uint from float and bstr from tstr, which
// plain JS values cannot. Used by the tests to prove every golden image matches the grammar.
// Subset: type and group rules; choices `/`; ranges `a..b`; controls .size .le .lt .ge .gt .ne .eq;
// maps and arrays with occurrence indicators `? * + n*m`; `name:` / `"text":` / `type =>` keys;
// group references inside maps, arrays and sequences. Maps are matched with cut semantics:
// a key named by an entry must have that entry's value type.

export type Node =
  | { t: 'uint' | 'nint'; v: bigint }
  | { t: 'float'; v: number }
  | { t: 'bstr'; v: Buffer }
  | { t: 'tstr'; v: string }
  | { t: 'bool'; v: boolean }
  | { t: 'null' | 'undefined' }
  | { t: 'array'; v: Node[] }
  | { t: 'map'; v: [Node, Node][] }
  | { t: 'tag'; tag: bigint; v: Node }
  | { t: 'simple'; v: number };

/** Decodes every top-level item of a CBOR sequence into typed nodes. Throws on malformed input. */
export function decodeSequence(buf: Buffer): Node[] {
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > buf.length) throw new Error(`CBOR truncated at ${pos}`);
  };
  const arg = (info: number): bigint => {
    if (info < 24) return BigInt(info);
    const len = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (!len) throw new Error(`unsupported additional information ${info} at ${pos}`);
    need(len);
    let v = 0n;
    for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(buf[pos + i]!);
    pos += len;
    return v;
  };
  const item = (depth: number): Node => {
    if (depth > 64) throw new Error('nesting too deep');
    need(1);
    const b = buf[pos++]!;
    const major = b >> 5;
    const info = b & 31;
    if (major === 7) {
      if (info === 20 || info === 21) return { t: 'bool', v: info === 21 };
      if (info === 22) return { t: 'null' };
      if (info === 23) return { t: 'undefined' };
      if (info >= 25 && info <= 27) {
        const len = 1 << (info - 24);
        need(len);
        const v = info === 25 ? half(buf.readUInt16BE(pos)) : info === 26 ? buf.readFloatBE(pos) : buf.readDoubleBE(pos);
        pos += len;
        return { t: 'float', v };
      }
      return { t: 'simple', v: Number(arg(info)) };
    }
    const n = arg(info);
    switch (major) {
      case 0:
        return { t: 'uint', v: n };
      case 1:
        return { t: 'nint', v: -1n - n };
      case 2:
      case 3: {
        const len = Number(n);
        need(len);
        const bytes = buf.subarray(pos, pos + len);
        pos += len;
        return major === 2 ? { t: 'bstr', v: bytes } : { t: 'tstr', v: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
      }
      case 4: {
        if (n > BigInt(buf.length - pos)) throw new Error('array length beyond input');
        const v: Node[] = [];
        for (let i = 0n; i < n; i++) v.push(item(depth + 1));
        return { t: 'array', v };
      }
      case 5: {
        if (n > BigInt(buf.length - pos)) throw new Error('map length beyond input');
        const v: [Node, Node][] = [];
        for (let i = 0n; i < n; i++) v.push([item(depth + 1), item(depth + 1)]);
        return { t: 'map', v };
      }
      default:
        return { t: 'tag', tag: n, v: item(depth + 1) };
    }
  };
  const out: Node[] = [];
  while (pos < buf.length) out.push(item(0));
  return out;
}

function half(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ------------------------------------------------------------------ grammar

type Type =
  | { k: 'prim'; name: string }
  | { k: 'lit'; value: string | bigint | number | boolean }
  | { k: 'ref'; name: string }
  | { k: 'choice'; alts: Type[] }
  | { k: 'range'; lo: Type; hi: Type; exclusive: boolean }
  | { k: 'ctl'; base: Type; op: string; arg: Type }
  | { k: 'map'; group: Entry[] }
  | { k: 'array'; group: Entry[] };

interface Entry {
  min: number;
  max: number;
  /** Text key (`name:` or `"name":`), computed key type (`type =>`), or none (array element / group reference). */
  key?: { text: string } | { type: Type };
  value: Type;
}

export interface Grammar {
  types: Map<string, Type>;
  groups: Map<string, Entry[]>;
}

const PRIMS = new Set(['uint', 'nint', 'int', 'tstr', 'text', 'bstr', 'bytes', 'bool', 'true', 'false', 'nil', 'null', 'any', 'float', 'float16', 'float32', 'float64', 'number', 'undefined']);

type Tok = { t: 'id' | 'num' | 'str' | 'op'; v: string; at: number };

function tokenize(src: string): Tok[] {
  const toks: Tok[] = [];
  const re = /\s+|;[^\n]*|(0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?)|"((?:[^"\\]|\\.)*)"|(\.(?:size|le|lt|ge|gt|ne|eq|default))\b|([A-Za-z@_$][A-Za-z0-9@_$-]*)|(\/\/|=>|\.\.\.|\.\.|[=\/:,(){}[\]?*+])/y;
  let m: RegExpExecArray | null;
  let pos = 0;
  while (pos < src.length) {
    re.lastIndex = pos;
    m = re.exec(src);
    if (!m) throw new Error(`CDDL: unexpected character ${JSON.stringify(src[pos])} at ${pos}`);
    if (m[1] !== undefined) toks.push({ t: 'num', v: m[1], at: pos });
    else if (m[2] !== undefined) toks.push({ t: 'str', v: JSON.parse(`"${m[2]}"`) as string, at: pos });
    else if (m[3] !== undefined) toks.push({ t: 'op', v: m[3], at: pos });
    else if (m[4] !== undefined) toks.push({ t: 'id', v: m[4], at: pos });
    else if (m[5] !== undefined) toks.push({ t: 'op', v: m[5], at: pos });
    pos = re.lastIndex;
  }
  return toks;
}

export function parseCddl(src: string): Grammar {
  const toks = tokenize(src);
  let i = 0;
  const peek = (o = 0) => toks[i + o];
  const is = (v: string, o = 0) => peek(o)?.t === 'op' && peek(o)!.v === v;
  const expect = (v: string) => {
    if (!is(v)) throw new Error(`CDDL: expected "${v}" at ${peek()?.at ?? 'end'}, found ${JSON.stringify(peek()?.v)}`);
    i++;
  };
  const num = (s: string): bigint | number => (/^-?\d+$|^0x/i.test(s) ? BigInt(s) : Number(s));

  const type2 = (): Type => {
    const tk = peek();
    if (!tk) throw new Error('CDDL: unexpected end');
    if (tk.t === 'num') return i++, { k: 'lit', value: num(tk.v) };
    if (tk.t === 'str') return i++, { k: 'lit', value: tk.v };
    if (tk.t === 'id') {
      i++;
      if (tk.v === 'true' || tk.v === 'false') return { k: 'lit', value: tk.v === 'true' };
      return PRIMS.has(tk.v) ? { k: 'prim', name: tk.v } : { k: 'ref', name: tk.v };
    }
    if (is('{')) {
      i++;
      const g = group('}');
      expect('}');
      return { k: 'map', group: g };
    }
    if (is('[')) {
      i++;
      const g = group(']');
      expect(']');
      return { k: 'array', group: g };
    }
    if (is('(')) {
      i++;
      const t = type();
      expect(')');
      return t;
    }
    throw new Error(`CDDL: unexpected ${JSON.stringify(tk.v)} at ${tk.at}`);
  };
  const type1 = (): Type => {
    let t = type2();
    if (is('..') || is('...')) {
      const exclusive = peek()!.v === '...';
      i++;
      t = { k: 'range', lo: t, hi: type2(), exclusive };
    }
    if (peek()?.t === 'op' && /^\.[a-z]+$/.test(peek()!.v)) {
      const op = peek()!.v;
      i++;
      t = { k: 'ctl', base: t, op, arg: type2() };
    }
    return t;
  };
  const type = (): Type => {
    const alts = [type1()];
    while (is('/')) {
      i++;
      alts.push(type1());
    }
    return alts.length === 1 ? alts[0]! : { k: 'choice', alts };
  };
  const entry = (): Entry => {
    let min = 1;
    let max = 1;
    if (is('?')) (min = 0), (max = 1), i++;
    else if (is('*')) (min = 0), (max = Infinity), i++;
    else if (is('+')) (min = 1), (max = Infinity), i++;
    else if (peek()?.t === 'num' && is('*', 1)) {
      min = Number(peek()!.v);
      i += 2;
      max = peek()?.t === 'num' ? Number(toks[i++]!.v) : Infinity;
    }
    if ((peek()?.t === 'id' || peek()?.t === 'str') && is(':', 1)) {
      const text = peek()!.v;
      i += 2;
      return { min, max, key: { text }, value: type() };
    }
    const t = type1();
    if (is('=>')) {
      i++;
      return { min, max, key: { type: t }, value: type() };
    }
    return { min, max, value: t };
  };
  const group = (close: string): Entry[] => {
    const out: Entry[] = [];
    while (!is(close)) {
      if (is('//')) throw new Error('CDDL: group choices are not in the supported subset');
      out.push(entry());
      if (is(',')) i++;
    }
    return out;
  };

  const g: Grammar = { types: new Map(), groups: new Map() };
  while (i < toks.length) {
    const name = peek();
    if (name?.t !== 'id') throw new Error(`CDDL: rule name expected at ${name?.at}`);
    i++;
    expect('=');
    if (is('(')) {
      i++;
      g.groups.set(name.v, group(')'));
      expect(')');
    } else {
      g.types.set(name.v, type());
    }
  }
  return g;
}

// ------------------------------------------------------------------ validation

export class CddlMismatch extends Error {
  override name = 'CddlMismatch';
}

/** Path length of a mismatch message ("a.b[3].c: ..."): the longer, the further the match got. */
function depthOf(message: string): number {
  // A literal mismatch (`kind: expected "pages"`) means "not this alternative": rank it lowest.
  const colon = message.indexOf(': ');
  if (colon < 0 || message.startsWith('expected "', colon + 2)) return 0;
  return colon;
}

function numeric(n: Node): number | bigint | undefined {
  return n.t === 'uint' || n.t === 'nint' || n.t === 'float' ? n.v : undefined;
}

function cmp(a: number | bigint, b: number | bigint): number {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  const x = Number(a);
  const y = Number(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export class Validator {
  constructor(private readonly g: Grammar) {}

  /** Throws CddlMismatch naming the path of the first mismatch. */
  check(ruleName: string, node: Node): void {
    const t = this.g.types.get(ruleName);
    if (!t) throw new Error(`CDDL: no type rule ${ruleName}`);
    this.type(t, node, ruleName);
  }

  /** A CBOR sequence against a group rule (RFC 8742 §4). */
  checkSequence(groupName: string, nodes: Node[]): void {
    const entries = this.g.groups.get(groupName);
    if (!entries) throw new Error(`CDDL: no group rule ${groupName}`);
    this.array(entries, nodes, groupName);
  }

  matches(t: Type, n: Node): boolean {
    try {
      this.type(t, n, '');
      return true;
    } catch (err) {
      if (err instanceof CddlMismatch) return false;
      throw err;
    }
  }

  private fail(path: string, what: string): never {
    throw new CddlMismatch(`${path}: ${what}`);
  }

  private type(t: Type, n: Node, path: string): void {
    switch (t.k) {
      case 'prim':
        return this.prim(t.name, n, path);
      case 'lit': {
        const v = t.value;
        const ok =
          typeof v === 'string' ? n.t === 'tstr' && n.v === v
            : typeof v === 'boolean' ? n.t === 'bool' && n.v === v
              : typeof v === 'bigint' ? (n.t === 'uint' || n.t === 'nint') && n.v === v
                : n.t === 'float' && n.v === v;
        if (!ok) this.fail(path, `expected ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
        return;
      }
      case 'ref': {
        const r = this.g.types.get(t.name);
        if (!r) throw new Error(`CDDL: undefined type ${t.name}`);
        return this.type(r, n, path);
      }
      case 'choice': {
        for (const a of t.alts) if (this.matches(a, n)) return;
        // Re-run the last alternative for a useful message when none matched.
        const messages = t.alts.map((a) => {
          try {
            this.type(a, n, path);
            return '';
          } catch (err) {
            return (err as Error).message;
          }
        });
        // Report the alternative that got furthest: usually the one meant (same `kind`).
        const best = messages.reduce((a, b) => (depthOf(b) > depthOf(a) ? b : a));
        throw new CddlMismatch(depthOf(best) > path.length ? best : `${path}: no alternative matches (${messages.slice(0, 3).join(' | ')}${messages.length > 3 ? ' | ...' : ''})`);
      }
      case 'range': {
        const v = numeric(n);
        const lo = (t.lo as { value: bigint | number }).value;
        const hi = (t.hi as { value: bigint | number }).value;
        if (v === undefined || cmp(v, lo) < 0 || (t.exclusive ? cmp(v, hi) >= 0 : cmp(v, hi) > 0)) this.fail(path, `not in range ${lo}..${hi}`);
        if (typeof lo === 'bigint' && n.t === 'float') this.fail(path, 'expected an integer');
        return;
      }
      case 'ctl':
        this.type(t.base, n, path);
        return this.control(t, n, path);
      case 'map':
        return this.map(t.group, n, path);
      case 'array':
        if (n.t !== 'array') this.fail(path, `expected array, found ${n.t}`);
        return this.array(t.group, n.v, path);
    }
  }

  private prim(name: string, n: Node, path: string): void {
    const ok: Record<string, boolean> = {
      uint: n.t === 'uint', nint: n.t === 'nint', int: n.t === 'uint' || n.t === 'nint', tstr: n.t === 'tstr', text: n.t === 'tstr',
      bstr: n.t === 'bstr', bytes: n.t === 'bstr', bool: n.t === 'bool', nil: n.t === 'null', null: n.t === 'null', any: true,
      float: n.t === 'float', float16: n.t === 'float', float32: n.t === 'float', float64: n.t === 'float', undefined: n.t === 'undefined',
      number: n.t === 'uint' || n.t === 'nint' || n.t === 'float',
    };
    if (!ok[name]) this.fail(path, `expected ${name}, found ${n.t}`);
  }

  private control(t: Extract<Type, { k: 'ctl' }>, n: Node, path: string): void {
    const arg = t.arg;
    if (t.op === '.size') {
      const size = n.t === 'bstr' ? n.v.length : n.t === 'tstr' ? Buffer.byteLength(n.v) : undefined;
      if (size !== undefined) {
        const ok = arg.k === 'range' ? this.matches(arg, { t: 'uint', v: BigInt(size) }) : arg.k === 'lit' && BigInt(size) === arg.value;
        if (!ok) this.fail(path, `size ${size} does not match .size`);
        return;
      }
      if (n.t === 'uint' && arg.k === 'lit') {
        if (n.v >= 1n << (8n * BigInt(arg.value as bigint))) this.fail(path, `does not fit in ${arg.value} bytes`);
        return;
      }
      return this.fail(path, '.size applied to an unsupported type');
    }
    const v = numeric(n);
    const a = arg.k === 'lit' ? arg.value : undefined;
    if (v === undefined || (typeof a !== 'bigint' && typeof a !== 'number')) {
      if (t.op === '.eq' || t.op === '.ne') {
        const eq = this.matches(arg, n);
        if (eq !== (t.op === '.eq')) this.fail(path, `${t.op} failed`);
        return;
      }
      return this.fail(path, `${t.op} needs numbers`);
    }
    const c = cmp(v, a);
    const ok = { '.le': c <= 0, '.lt': c < 0, '.ge': c >= 0, '.gt': c > 0, '.eq': c === 0, '.ne': c !== 0 }[t.op];
    if (!ok) this.fail(path, `${v} fails ${t.op} ${a}`);
  }

  /** Group entries with group references expanded. */
  private flatten(entries: Entry[], seen = 0): Entry[] {
    if (seen > 32) throw new Error('CDDL: group references nest too deeply');
    const out: Entry[] = [];
    for (const e of entries) {
      if (!e.key && e.value.k === 'ref' && this.g.groups.has(e.value.name)) {
        if (e.min !== 1 || e.max !== 1) throw new Error('CDDL: occurrence on a group reference is not supported');
        out.push(...this.flatten(this.g.groups.get(e.value.name)!, seen + 1));
      } else out.push(e);
    }
    return out;
  }

  private map(group: Entry[], n: Node, path: string): void {
    if (n.t !== 'map') this.fail(path, `expected map, found ${n.t}`);
    const entries = this.flatten(group);
    const used = new Array<boolean>(n.v.length).fill(false);
    const seenKeys = new Set<string>();
    for (const [k] of n.v) {
      if (k.t === 'tstr') {
        if (seenKeys.has(k.v)) this.fail(path, `duplicate key ${k.v}`);
        seenKeys.add(k.v);
      }
    }
    for (const e of entries) {
      if (!e.key || !('text' in e.key)) continue;
      const text = e.key.text;
      const idx = n.v.findIndex(([k]) => k.t === 'tstr' && k.v === text);
      if (idx < 0) {
        if (e.min > 0) this.fail(`${path}.${text}`, e.value.k === 'lit' ? `expected "${String(e.value.value)}" (missing)` : 'missing');
        continue;
      }
      used[idx] = true;
      this.type(e.value, n.v[idx]![1], `${path}.${text}`);
    }
    const computed = entries.filter((e) => e.key && 'type' in e.key);
    n.v.forEach(([k, v], idx) => {
      if (used[idx]) return;
      const e = computed.find((c) => this.matches((c.key as { type: Type }).type, k));
      const name = k.t === 'tstr' ? k.v : `<${k.t}>`;
      if (!e) this.fail(path, `key "${name}" is not allowed here`);
      this.type(e.value, v, `${path}.${name}`);
    });
    for (const e of entries) if (!e.key) throw new Error(`CDDL: map entry without a key at ${path}`);
  }

  private array(group: Entry[], items: Node[], path: string): void {
    const entries = this.flatten(group);
    // Backtracking match of entries (with occurrences) against items.
    let deepest = { at: -1, message: '' };
    const go = (ei: number, ii: number): boolean => {
      if (ei === entries.length) {
        if (ii === items.length) return true;
        if (ii > deepest.at) deepest = { at: ii, message: `${path}[${ii}]: unexpected extra item` };
        return false;
      }
      const e = entries[ei]!;
      let count = 0;
      let j = ii;
      const stops: number[] = [];
      if (e.min === 0) stops.push(j);
      while (count < e.max && j < items.length) {
        try {
          this.type(e.value, items[j]!, `${path}[${j}]`);
        } catch (err) {
          if (!(err instanceof CddlMismatch)) throw err;
          if (j > deepest.at || (j === deepest.at && depthOf(err.message) > depthOf(deepest.message))) deepest = { at: j, message: err.message };
          break;
        }
        j++;
        count++;
        if (count >= e.min) stops.push(j);
      }
      if (count < e.min && j >= items.length && j > deepest.at) deepest = { at: j, message: `${path}: too few items` };
      for (let s = stops.length - 1; s >= 0; s--) if (go(ei + 1, stops[s]!)) return true;
      return false;
    };
    if (!go(0, 0)) throw new CddlMismatch(deepest.message || `${path}: array does not match`);
  }
}

/** Validates a whole image (bytes) against formats/v1/image.cddl text. Throws CddlMismatch. */
export function validateImageCddl(cddlText: string, image: Buffer): void {
  new Validator(parseCddl(cddlText)).checkSequence('handoff-image', decodeSequence(image));
}

// The shape every CLI verb module exports. Verbs are imported lazily so that
// `handoff --version` does not pay for ajv, cbor-x or ffi-rs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  name: string;
  summary: string;
  /** Full help text, printed by `handoff VERB --help`. */
  help: string;
  options: Options;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}

export function parse(command: Command, argv: string[]): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...command.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: values as Record<string, unknown>, positionals };
  } catch (err) {
    throw new UsageError(`${command.name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

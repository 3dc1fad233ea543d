// handoff command line: dispatches to one module per verb (src/cli/<verb>.ts).
import { readFileSync } from 'node:fs';
import { EXIT, HandoffError, asHandoffError } from '../errors.js';
import { parse, type Command } from './command.js';

/** Verb -> lazily imported module. */
const VERBS: Record<string, () => Promise<{ command: Command }>> = {
  inspect: () => import('./inspect.js'),
  validate: () => import('./validate.js'),
  dump: () => import('./dump.js'),
  restore: () => import('./restore.js'),
  check: () => import('./check.js'),
  unlock: () => import('./unlock.js'),
  prepare: () => import('./prepare.js'),
  resume: () => import('./resume.js'),
  abort: () => import('./abort.js'),
};

const EXIT_HELP = `Exit codes:
  0 ok   1 internal failure   2 usage   3 image unreadable, corrupt or unsafe
  4 blocked (preflight)   5 kernel feature or native core missing
  6 process dump/restore failure   7 network lock or socket repair failure`;

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function usage(): Promise<string> {
  const lines = ['Usage: handoff VERB [options]   (handoff VERB --help for details)', '', 'Verbs:'];
  for (const [name, load] of Object.entries(VERBS)) {
    const { command } = await load();
    lines.push(`  ${name.padEnd(10)} ${command.summary}`);
  }
  lines.push('', 'Global: --version, --help. Logging: HANDOFF_LOG=error|warn|info|debug', '', EXIT_HELP);
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === '--version' || verb === '-V') {
    process.stdout.write(`handoff ${version()}\n`);
    return EXIT.ok;
  }
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    process.stdout.write((await usage()) + '\n');
    return verb === undefined ? EXIT.usage : EXIT.ok;
  }
  const load = VERBS[verb];
  if (!load) {
    process.stderr.write(`handoff: unknown verb '${verb}'\n${await usage()}\n`);
    return EXIT.usage;
  }
  const json = rest.includes('--json');
  try {
    const { command } = await load();
    const { values, positionals } = parse(command, rest);
    if (values.help) {
      process.stdout.write(`${command.help.trimEnd()}\n\n${EXIT_HELP}\n`);
      return EXIT.ok;
    }
    return await command.run(values, positionals);
  } catch (err) {
    const e: HandoffError = asHandoffError(err);
    if (json) process.stdout.write(JSON.stringify(e.toJSON(), null, 2) + '\n');
    process.stderr.write(`handoff ${verb}: error ${e.code}: ${e.message}\n`);
    if (process.env.HANDOFF_LOG === 'debug' && e.stack) process.stderr.write(e.stack + '\n');
    return e.exitCode;
  }
}

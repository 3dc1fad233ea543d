// A logger per module, each with its own prefix, writing to stderr.
// Level from HANDOFF_LOG (error|warn|info|debug); default warn so the CLI's stdout stays clean.

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 } as const;
type Level = keyof typeof LEVELS;

function currentLevel(): number {
  const env = (process.env.HANDOFF_LOG ?? 'warn') as Level;
  return LEVELS[env] ?? LEVELS.warn;
}

export type Logger = Record<Level, (message: string, fields?: Record<string, unknown>) => void>;

export function logger(prefix: string): Logger {
  const emit = (level: Level) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] > currentLevel()) return;
    const extra = fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'bigint' ? '0x' + v.toString(16) : JSON.stringify(v)}`).join(' ') : '';
    process.stderr.write(`handoff ${level} [${prefix}] ${message}${extra}\n`);
  };
  return { error: emit('error'), warn: emit('warn'), info: emit('info'), debug: emit('debug') };
}

// The tool's version, from package.json (read once).
import { readFileSync } from 'node:fs';

let cached: string | undefined;
export function version(): string {
  if (!cached) {
    const url = new URL(import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json', import.meta.url);
    cached = (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  }
  return cached;
}

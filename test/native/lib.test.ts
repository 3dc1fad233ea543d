// When libhandoff.so cannot be loaded, the error says every path that was tried and why.
import t from 'tap';
import { execa } from 'execa';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');

t.test('a missing native library is reported with every path tried', async (t) => {
  // A copy of the built code in a tree without native/build, so the project path is missing too.
  const dir = mkdtempSync(join(tmpdir(), 'handoff-nolib-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  mkdirSync(join(dir, 'bogus'));
  const notALibrary = join(dir, 'bogus', 'libhandoff.so');
  writeFileSync(notALibrary, 'not an ELF file');
  const script = `import { takeFd } from './dist/src/native/fd.js';
try { takeFd(1, 0); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
  const r = await execa(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, env: { HANDOFF_NATIVE_LIB: notALibrary } });
  const err = JSON.parse(String(r.stdout)) as { code: string; message: string };
  t.equal(err.code, 'E_NATIVE_LOAD');
  t.match(err.message, `${notALibrary}: `, 'the explicit path and why it failed');
  t.match(err.message, `${join(dir, 'native', 'build', 'libhandoff.so')}: not found`, 'the project build path');
  t.match(err.message, '/usr/lib/handoff/libhandoff.so', 'the installed path');
  t.match(err.message, 'npm run build', 'how to fix it');
});

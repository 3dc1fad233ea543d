// presentRuns against a real python3 process whose pages we touch in a known pattern.
import t from 'tap';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Pagemap, presentRuns, sharedDataRuns, zeroPagePfn } from '../../src/native/pagemap.js';
import { ProcessError } from '../../src/errors.js';

const PAGE = 4096;

// Maps areas, touches pages, prints their addresses as one JSON line, then waits for stdin to close.
const TARGET = String.raw`
import ctypes, json, mmap, os, sys, tempfile
P = mmap.PAGESIZE
def addr(m): return ctypes.addressof(ctypes.c_char.from_buffer(m))

anon = mmap.mmap(-1, 64 * P, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
anon.madvise(mmap.MADV_NOHUGEPAGE)
for i in (0, 1, 2, 10, 11, 40, 63): anon[i * P] = 1        # written
for i in (20, 21, 22): anon[i * P]                         # only read: the zero page

fd, name = tempfile.mkstemp(); os.unlink(name)
os.write(fd, b'x' * (16 * P))
filemap = mmap.mmap(fd, 16 * P, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(0, 4): filemap[i * P]                       # read: page cache pages
for i in (5, 6, 10): filemap[i * P] = 0x79                 # written: private copies

shared = mmap.mmap(-1, 16 * P, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
for i in (3, 4, 9): shared[i * P] = 1

# shared with a child: the child touches pages 2 and 7 and exits, then we touch page 3
fork_shared = mmap.mmap(-1, 16 * P, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
child = os.fork()
if child == 0:
    fork_shared[2 * P] = 1; fork_shared[7 * P] = 1
    os._exit(0)
os.waitpid(child, 0)
fork_shared[3 * P] = 1

# a memfd mapped from file offset 4 pages: pages 5 and 6 of the file written through the fd
mfd = os.memfd_create("handoff-test")
os.ftruncate(mfd, 16 * P)
os.pwrite(mfd, b'z' * (2 * P), 5 * P)
memfd_map = mmap.mmap(mfd, 8 * P, flags=mmap.MAP_SHARED, offset=4 * P)

many = mmap.mmap(-1, 10000 * P, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
many.madvise(mmap.MADV_NOHUGEPAGE)
for i in range(0, 10000, 2): many[i * P] = 1               # 5000 separate runs

print(json.dumps({"anon": addr(anon), "file": addr(filemap), "shared": addr(shared), "many": addr(many), "forkShared": addr(fork_shared), "memfd": addr(memfd_map)}), flush=True)
sys.stdin.read()
`;

async function startTarget(): Promise<{ child: ChildProcessWithoutNullStreams; at: Record<string, number> }> {
  const child = spawn('/usr/bin/python3', ['-c', TARGET]);
  const lines = createInterface({ input: child.stdout });
  const [line] = (await once(lines, 'line')) as [string];
  return { child, at: JSON.parse(line) as Record<string, number> };
}

const target = await startTarget();
t.teardown(() => {
  target.child.stdin.end();
});
const { child, at } = target;
const pid = child.pid!;
const pages = (list: Array<[number, number]>, base: number) => list.map(([first, count]) => ({ addr: base + first * PAGE, pages: count }));

for (const forceRead of [false, true]) {
  const how = forceRead ? 'pread of pagemap entries' : 'PAGEMAP_SCAN where available';
  t.test(`${how}: written anonymous pages come back as exact runs, read-only zero pages left out`, async (t) => {
    t.ok(zeroPagePfn() > 0, 'root sees the zero page pfn');
    const runs = presentRuns(pid, at.anon!, at.anon! + 64 * PAGE, 'anonymous-private', { forceRead });
    t.same(runs, pages([[0, 3], [10, 2], [40, 1], [63, 1]], at.anon!));
  });

  t.test(`${how}: without zero-page skipping the read pages are stored too`, async (t) => {
    const runs = presentRuns(pid, at.anon!, at.anon! + 64 * PAGE, 'anonymous-private', { skipZeroPage: false, forceRead });
    t.same(runs, pages([[0, 3], [10, 2], [20, 3], [40, 1], [63, 1]], at.anon!));
  });

  t.test(`${how}: a private file mapping yields only the pages the process wrote`, async (t) => {
    const runs = presentRuns(pid, at.file!, at.file! + 16 * PAGE, 'file-private', { forceRead });
    t.same(runs, pages([[5, 2], [10, 1]], at.file!));
    // The read pages are mapped too (with fault-around, their neighbours as well), but as the file's own pages.
    const mapped = presentRuns(pid, at.file!, at.file! + 16 * PAGE, 'shared', { forceRead });
    t.ok(mapped.some((r) => r.addr <= at.file! && r.addr + r.pages * PAGE >= at.file! + 4 * PAGE), 'pages 0-3 are mapped');
  });

  t.test(`${how}: a shared anonymous mapping yields its touched pages`, async (t) => {
    const runs = presentRuns(pid, at.shared!, at.shared! + 16 * PAGE, 'shared', { forceRead });
    t.same(runs, pages([[3, 2], [9, 1]], at.shared!));
  });

  t.test(`${how}: more runs than one native call returns are continued without loss`, async (t) => {
    const map = new Pagemap(pid);
    const runs = map.runs(at.many!, at.many! + 10000 * PAGE, 'anonymous-private', { forceRead });
    map.close();
    t.equal(runs.length, 5000);
    t.ok(runs.every((r, i) => r.pages === 1 && r.addr === at.many! + i * 2 * PAGE), 'every other page, in order');
  });

  t.test(`${how}: a sub-range starting mid-area is scanned from its first page`, async (t) => {
    const runs = presentRuns(pid, at.anon! + 11 * PAGE, at.anon! + 41 * PAGE, 'anonymous-private', { forceRead });
    t.same(runs, pages([[11, 1], [40, 1]], at.anon!));
  });
}

t.test('both scanning paths agree on every area of a real process, [vsyscall] included', async (t) => {
  const { readMaps } = await import('../../src/kernel/proc.js');
  const map = new Pagemap(pid);
  t.teardown(() => map.close());
  for (const area of readMaps(pid)) {
    const mode = area.shared ? 'shared' : area.path ? 'file-private' : 'anonymous-private';
    t.same(map.runs(area.start, area.end, mode), map.runs(area.start, area.end, mode, { forceRead: true }), `${area.start.toString(16)} ${area.path ?? area.special ?? ''}`);
  }
});

t.test('runsMany scans every area in one call and matches per-area scans', async (t) => {
  const { readMaps } = await import('../../src/kernel/proc.js');
  const map = new Pagemap(pid);
  t.teardown(() => map.close());
  const areas = readMaps(pid).map((a) => ({ start: a.start, end: a.end, mode: a.shared ? ('shared' as const) : a.path ? ('file-private' as const) : ('anonymous-private' as const) }));
  t.ok(areas.some((a) => a.start === at.many), 'includes the area with 5000 runs (more than one call returns)');
  for (const forceRead of [false, true]) {
    const many = map.runsMany(areas, { forceRead });
    t.equal(many.length, areas.length);
    t.same(many, areas.map((a) => map.runs(a.start, a.end, a.mode, { forceRead })), forceRead ? 'pread path' : 'scan path');
  }
});

t.test('shmem data runs include pages only another sharer touched; pagemap does not', async (t) => {
  const area = { start: at.forkShared!, end: at.forkShared! + 16 * PAGE, offset: 0 };
  t.same(presentRuns(pid, area.start, area.end, 'shared'), pages([[3, 1]], area.start), 'pagemap: only what this process mapped');
  t.same(sharedDataRuns(pid, area), pages([[2, 2], [7, 1]], area.start), 'the object: pages 2, 3 and 7');
});

t.test('shmem data runs honour the mapping offset of a memfd', async (t) => {
  // File pages 5-6 written through the fd; the mapping starts at file page 4.
  const area = { start: at.memfd!, end: at.memfd! + 8 * PAGE, offset: 4 * PAGE };
  t.same(sharedDataRuns(pid, area), pages([[1, 2]], area.start));
  t.same(presentRuns(pid, area.start, area.end, 'shared'), [], 'never faulted in here');
});

t.test('a process that is gone is reported as E_NO_PROCESS', async (t) => {
  const gone = spawn('/bin/true');
  await once(gone, 'exit');
  let caught: unknown;
  try {
    presentRuns(gone.pid!, 0, PAGE, 'anonymous-private');
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof ProcessError, 'a ProcessError');
  t.equal((caught as ProcessError).code, 'E_NO_PROCESS');
  t.equal((caught as ProcessError).details.pid, gone.pid);
});

// What the core hands an fd-kind module: the fd taken into this process (pidfd_getfd), its
// /proc link and fdinfo, and fstat of it.
import { fstatSync, readlinkSync } from 'node:fs';
import { flatFdinfo, readFdinfo } from '../kernel/proc.js';
import { takeFd } from '../native/fd.js';
import type { FdInfo } from '../objects/types.js';

export function fdInfo(pid: number, fd: number, link = readlinkSync(`/proc/${pid}/fd/${fd}`)): FdInfo {
  const localFd = takeFd(pid, fd);
  const st = fstatSync(localFd);
  return {
    pid, fd, localFd, link,
    fdinfo: flatFdinfo(readFdinfo(pid, fd)),
    stat: { mode: st.mode, ino: st.ino, dev: st.dev, rdev: st.rdev, size: st.size, uid: st.uid, gid: st.gid },
  };
}

// Every fd-kind module, in the order the core asks them (the first whose `matches` is true
// dumps the fd). Restore looks modules up by record kind.
import type { FdObjectModule } from './types.js';
import { fileModule } from './file.js';
import { pipeModule } from './pipe.js';
import { eventfdModule } from './eventfd.js';
import { timerfdModule } from './timerfd.js';
import { signalfdModule } from './signalfd.js';
import { inotifyModule } from './inotify.js';
import { epollModule } from './epoll.js';
import { tcpModule } from './tcp.js';
import { udpModule } from './udp.js';
import { unixModule } from './unix.js';
import { ttyModule } from './tty.js';

export { restoreEpollInterest } from './epoll.js';

export const fdModules: readonly FdObjectModule[] = [ttyModule, fileModule, pipeModule, unixModule, tcpModule, udpModule, eventfdModule, timerfdModule, signalfdModule, inotifyModule, epollModule];

/** The module that restores records of `kind`. */
export function moduleForKind(kind: string): FdObjectModule | undefined {
  return fdModules.find((m) => m.kinds.includes(kind));
}

// Credentials: uids, gids, supplementary groups, capabilities (all five sets), securebits,
// no_new_privs. Restored last, so a restored process never holds more than it had.
import type { CredentialsRecord } from '../format/records.js';
import { readStatus } from '../kernel/proc.js';
import { readFileSync } from 'node:fs';
import type { RemoteTask } from '../ptrace/remote.js';
import { PR, SYS } from '../ptrace/syscalls.js';

const CAP_VERSION_3 = 0x20080522;
const CAP_SETPCAP = 8n;

export function dumpCredentials(task: RemoteTask): CredentialsRecord {
  const st = readStatus(task.pid);
  const securebits = task.call('prctl(PR_GET_SECUREBITS)', SYS.prctl, PR.GET_SECUREBITS);
  return {
    kind: 'credentials',
    pid: task.pid,
    uid: st.uid,
    gid: st.gid,
    groups: st.groups,
    capInheritable: st.capInh,
    capPermitted: st.capPrm,
    capEffective: st.capEff,
    capBounding: st.capBnd,
    capAmbient: st.capAmb,
    securebits,
    noNewPrivs: st.noNewPrivs,
  };
}

function lastCap(): number {
  return Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
}

/**
 * Runs in the restored process while it is still fully privileged, as the final step. Order
 * matters: bounding set while all capabilities are effective; keep the permitted set across
 * the uid change (PR_SET_KEEPCAPS); make the permitted set effective again so CAP_SETPCAP allows
 * the recorded securebits; then the recorded sets, which can only lower what it holds.
 */
export function restoreCredentials(task: RemoteTask, rec: CredentialsRecord): void {
  const last = lastCap();
  for (let cap = 0; cap <= last; cap++) {
    if (!(rec.capBounding & (1n << BigInt(cap)))) task.call('prctl(PR_CAPBSET_DROP)', SYS.prctl, PR.CAPBSET_DROP, cap);
  }
  task.call('prctl(PR_SET_KEEPCAPS)', SYS.prctl, PR.SET_KEEPCAPS, 1);
  const groups = Buffer.alloc(Math.max(4, rec.groups.length * 4));
  rec.groups.forEach((g, i) => groups.writeUInt32LE(g, i * 4));
  task.call('setgroups', SYS.setgroups, rec.groups.length, task.put(groups));
  task.call('setresgid', SYS.setresgid, rec.gid[0], rec.gid[1], rec.gid[2]);
  task.raw(SYS.setfsgid, rec.gid[3]);
  task.call('setresuid', SYS.setresuid, rec.uid[0], rec.uid[1], rec.uid[2]);
  task.raw(SYS.setfsuid, rec.uid[3]);
  const withSetpcap = rec.capPermitted | (1n << CAP_SETPCAP);
  capset(task, withSetpcap, withSetpcap, 0n);
  task.call('prctl(PR_SET_SECUREBITS)', SYS.prctl, PR.SET_SECUREBITS, rec.securebits);
  capset(task, rec.capEffective, rec.capPermitted, rec.capInheritable);
  for (let cap = 0; cap <= last; cap++) {
    if (rec.capAmbient & (1n << BigInt(cap))) task.call('prctl(PR_CAP_AMBIENT_RAISE)', SYS.prctl, PR.CAP_AMBIENT, PR.CAP_AMBIENT_RAISE, cap);
  }
  if (rec.noNewPrivs) task.call('prctl(PR_SET_NO_NEW_PRIVS)', SYS.prctl, PR.SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

function capset(task: RemoteTask, effective: bigint, permitted: bigint, inheritable: bigint): void {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(CAP_VERSION_3, 0);
  const data = Buffer.alloc(24);
  const lo = (v: bigint) => Number(v & 0xffffffffn);
  const hi = (v: bigint) => Number(v >> 32n);
  data.writeUInt32LE(lo(effective), 0);
  data.writeUInt32LE(lo(permitted), 4);
  data.writeUInt32LE(lo(inheritable), 8);
  data.writeUInt32LE(hi(effective), 12);
  data.writeUInt32LE(hi(permitted), 16);
  data.writeUInt32LE(hi(inheritable), 20);
  task.put(hdr, 0);
  task.put(data, 8);
  task.call('capset', SYS.capset, task.scratch, task.scratch + 8);
}

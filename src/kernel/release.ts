// Kernel release strings ("6.18.44-fc-v669", "5.10.0-30-amd64") and version comparison.

export interface KernelVersion {
  major: number;
  minor: number;
  patch: number;
}

/** Parses the leading "X.Y[.Z]" of a release; throws on anything else. */
export function parseRelease(release: string): KernelVersion {
  let i = 0;
  const nums: number[] = [];
  while (nums.length < 3) {
    let v = -1;
    while (i < release.length) {
      const c = release.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = (v < 0 ? 0 : v * 10) + (c - 48);
      i++;
    }
    if (v < 0) break;
    nums.push(v);
    if (release[i] !== '.') break;
    i++;
  }
  if (nums.length < 2) throw new Error(`not a kernel release: ${JSON.stringify(release)}`);
  return { major: nums[0]!, minor: nums[1]!, patch: nums[2] ?? 0 };
}

/** <0, 0, >0 like a comparator; "5.10" compares equal to "5.10.0". */
export function compareVersions(a: KernelVersion | string, b: KernelVersion | string): number {
  const x = typeof a === 'string' ? parseRelease(a) : a;
  const y = typeof b === 'string' ? parseRelease(b) : b;
  return x.major - y.major || x.minor - y.minor || x.patch - y.patch;
}

export function atLeast(version: KernelVersion | string, minimum: string): boolean {
  return compareVersions(version, minimum) >= 0;
}

export function formatVersion(v: KernelVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

// t.throws(fn, errno(EAGAIN), ...): the error a native call throws carries the errno it failed
// with. tap matches any object pattern, but its types only know Error shapes: hence the cast.
export const errno = (n: number): Error => ({ errno: n }) as unknown as Error;

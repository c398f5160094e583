/**
 * A test process whose runner dies must not leave VMs behind. qemu itself dies with the
 * process that started it (runQemu's parent-death signal); this ends the test process when
 * its own parent (node --test) is gone, which the kernel does not do for us.
 */
export function exitWithParent(intervalMs = 500): void {
  const parent = process.ppid;
  const t = setInterval(() => {
    // process.ppid is read afresh each time: an orphan is re-parented (to 1 or a subreaper).
    if (process.ppid !== parent) process.exit(1); // 'exit' handlers SIGKILL running VMs
  }, intervalMs);
  t.unref();
}

/**
 * Every boot case under test/cases (see test/harness/cases.ts), booted several at a time.
 * LINUXKIT_E2E_SKIP_LABELS=slow,uefi skips cases with those labels; LINUXKIT_E2E_JOBS sets
 * how many VMs run at once.
 */
import path from 'node:path';
import { describe, test } from 'node:test';
import { discoverCases, parallelVms, runCase, Slots } from '../harness/cases.js';
import { exitWithParent } from '../harness/watchdog.js';
import { REPO, TEST_CACHE } from '../helpers.js';
import { hostHas } from '../tools.js';

exitWithParent();
const cases = discoverCases(path.join(REPO, 'test', 'cases'));
const skipLabels = new Set((process.env.LINUXKIT_E2E_SKIP_LABELS ?? '').split(',').filter(Boolean));
const slots = new Slots(parallelVms(512));
const noQemu =
  !hostHas('qemu-system-x86_64') && 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)';

describe('boot cases', { concurrency: true }, () => {
  for (const c of cases) {
    const skipped = c.spec.labels.filter((l) => skipLabels.has(l));
    test(c.id, {
      skip: noQemu || (skipped.length ? `label ${skipped.join(', ')} skipped` : false),
      // Generous: the case's own boot limit applies once it gets a VM slot.
      timeout: (c.spec.timeout * cases.length + 900) * 1000,
    }, async () => {
      await runCase(c, { cacheDir: TEST_CACHE, slots });
    });
  }
});

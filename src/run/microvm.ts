/**
 * qemu's microvm machine: no PCI, no SeaBIOS (qboot), a small ACPI table set that describes
 * virtio-mmio devices. Under TCG a kernel+initrd boot powers off ~0.4 s sooner than on
 * q35 (less firmware, no PCI and ACPI enumeration to emulate), which is why runQemu takes it
 * for such boots when both of these hold:
 *  - The guest can drive virtio-mmio: its kernel has the driver built in, or its initrd holds
 *    virtio_mmio.ko and loads it at boot (etc/modules-load.d). Otherwise it would have no NIC.
 *  - The host's TSC frequency is known. microvm has no HPET and no ACPI PM timer, and under
 *    TCG the kernel's PIT calibration fails, so with no reference clock it hangs at boot. Under
 *    TCG the guest's TSC is the host's, so the host's frequency is passed as tsc_early_khz.
 *    It is trusted only where the host's /proc/cpuinfo shows a constant, non-stop TSC and no
 *    frequency scaling (no cpufreq driver, one frequency for all CPUs).
 *    The guest is also told tsc=reliable: its check that the vCPUs' TSCs agree fails under
 *    emulation (they do agree: each reads the host's), and the kernel then keeps time by its
 *    timer ticks, which fall behind when the host is busy (measured: 0.79x the host's pace).
 */
import { access, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { decompress } from '../formats/compress.js';
import { readCpio } from '../formats/cpio.js';
import { writeFileAtomic } from '../util/atomic.js';
import { fileIdentityWithDevice, pruneLeastRecentlyUsed, touch } from '../util/lru.js';

/** virtio_mmio's ACPI id (its acpi_device_id table): in a vmlinux, the driver is built in. */
const ACPI_ID = Buffer.from('LNRO0005');
const MODULE_FILE = /(^|\/)virtio_mmio\.ko(\.(xz|zst|gz))?$/;
const MODULES_LOAD_CONF = /^(\.\/)?(etc|usr\/lib|lib)\/modules-load\.d\/[^/]+\.conf$/;
/** How many kernel+initrd answers the cache keeps (each an empty file). */
const KEEP = 64;

/**
 * The host's TSC frequency in kHz from /proc/cpuinfo's text, or undefined unless it can be
 * trusted: every CPU reports the same "cpu MHz", the TSC is constant and non-stop, and no
 * cpufreq driver scales the clock (then "cpu MHz" is the kernel's calibrated cpu_khz, which it
 * keeps within 10% of tsc_khz and in practice equal).
 */
export function hostTscKhz(cpuinfo: string, cpufreqDriver: boolean): number | undefined {
  if (cpufreqDriver) return undefined;
  const mhz = new Set([...cpuinfo.matchAll(/^cpu MHz\s*:\s*([\d.]+)\s*$/gm)].map((m) => m[1]));
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  if (mhz.size !== 1 || !flags.includes('constant_tsc') || !flags.includes('nonstop_tsc')) return undefined;
  const khz = Math.round(Number([...mhz][0]) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : undefined;
}

let tscKhz: Promise<number | undefined> | undefined;
/** hostTscKhz for this host (read once per process). */
export function readHostTscKhz(): Promise<number | undefined> {
  tscKhz ??= (async () => {
    if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
    try {
      const cpuinfo = await readFile('/proc/cpuinfo', 'latin1');
      const cpufreq = await access('/sys/devices/system/cpu/cpufreq/policy0').then(
        () => true,
        () => false,
      );
      return hostTscKhz(cpuinfo, cpufreq);
    } catch {
      return undefined;
    }
  })();
  return tscKhz;
}

/** Does this (uncompressed) cpio hold virtio_mmio.ko and a modules-load.d file that names it? */
export function cpioLoadsVirtioMmio(cpio: Uint8Array): boolean {
  let module = false;
  let loaded = false;
  for (const e of readCpio(cpio)) {
    if (MODULE_FILE.test(e.name)) module = true;
    else if (
      MODULES_LOAD_CONF.test(e.name) &&
      /^\s*virtio[-_]mmio\b/m.test(Buffer.from(e.data).toString('latin1'))
    )
      loaded = true;
    if (module && loaded) return true;
  }
  return false;
}

async function initrdLoadsVirtioMmio(initrd: Uint8Array): Promise<boolean> {
  try {
    return cpioLoadsVirtioMmio(await decompress(initrd));
  } catch {
    return false; // an initrd we cannot read: q35, which needs nothing from it
  }
}

/**
 * Can this kernel (the PVH vmlinux, uncompressed) and initrd drive microvm's virtio-mmio
 * devices? The answer is kept in cacheDir/microvm, named by `kernelKey` (the PVH cache's sha256
 * of the kernel) and the initrd file's identity (device, inode, ctime, size: a file written
 * again, even in place, has a new ctime), so a boot pays for the look only once per initrd
 * (~0.1 s for sshd's). A cache that cannot be written only means looking again next time.
 */
export async function drivesVirtioMmio(
  vmlinux: string,
  kernelKey: string,
  initrd: string,
  cacheDir: string,
): Promise<boolean> {
  const st = await stat(initrd, { bigint: true });
  const dir = path.join(cacheDir, 'microvm');
  // The initrd can be on any file system: its device is part of its identity here.
  const base = path.join(dir, `${kernelKey}-${fileIdentityWithDevice(st)}`);
  if (await touch(`${base}.yes`)) return true;
  if (await touch(`${base}.no`)) return false;
  const yes =
    (await initrdLoadsVirtioMmio(await readFile(initrd))) || (await readFile(vmlinux)).includes(ACPI_ID);
  try {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(`${base}.${yes ? 'yes' : 'no'}`, new Uint8Array());
    const answers = (await readdir(dir)).filter((n) => /\.(yes|no)$/.test(n)).map((n) => path.join(dir, n));
    await pruneLeastRecentlyUsed(answers, { maxFiles: KEEP });
  } catch {
    // read-only cache: fine
  }
  return yes;
}

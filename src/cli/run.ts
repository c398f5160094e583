import { existsSync, readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { runQemu } from '../run/qemu.js';
import { UserError } from '../util/errors.js';

const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) === 0) throw new InvalidArgumentError('expected a positive whole number');
  return Number(v);
};

/** A kernel+initrd build is named by its prefix: PATH-kernel, PATH-initrd.img, PATH-cmdline. */
export function kernelInitrdPaths(prefix: string): { kernel: string; initrd: string; cmdline: string } {
  const p = prefix.replace(/-(kernel|initrd\.img|cmdline)$/, '');
  const kernel = `${p}-kernel`;
  const initrd = `${p}-initrd.img`;
  for (const f of [kernel, initrd]) {
    if (!existsSync(f))
      throw new UserError(`${f} not found: give the DIR/NAME prefix of a kernel+initrd build`);
  }
  const cmdlineFile = `${p}-cmdline`;
  const cmdline = existsSync(cmdlineFile) ? readFileSync(cmdlineFile, 'utf8').trim() : '';
  return { kernel, initrd, cmdline };
}

export function runCommand(): Command {
  const run = new Command('run').description('Run a built system');
  run.addCommand(
    new Command('qemu')
      .description('Boot a kernel+initrd build in qemu, console on this terminal')
      .argument('<path>', 'the DIR/NAME prefix of a kernel+initrd build')
      .option('--mem <MB>', 'memory in MB', positiveInt, 1024)
      .option('--cpus <n>', 'number of CPUs', positiveInt, 1)
      .option(
        '--accel <accel>',
        'kvm or tcg (default: probe for a working KVM, else tcg; or LINUXKIT_QEMU_ACCEL)',
      )
      .option('--qemu <binary>', 'the qemu binary (default qemu-system-x86_64)')
      .action(async (path: string, o: { mem: number; cpus: number; accel?: string; qemu?: string }) => {
        if (o.accel !== undefined && o.accel !== 'kvm' && o.accel !== 'tcg') {
          throw new UserError(`--accel must be kvm or tcg, got ${JSON.stringify(o.accel)}`);
        }
        const files = kernelInitrdPaths(path);
        const r = await runQemu({
          ...files,
          mem: o.mem,
          cpus: o.cpus,
          accel: o.accel as 'kvm' | 'tcg' | undefined,
          qemu: o.qemu,
        });
        process.exitCode = r.code;
      }),
  );
  return run;
}

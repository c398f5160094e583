import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { parseNetworking, parsePublish } from '../run/qemu.js';
import { type BootKind, parseDisk, runVm } from '../run/vm.js';
import { UserError } from '../util/errors.js';

const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) === 0) throw new InvalidArgumentError('expected a positive whole number');
  return Number(v);
};
const collect = (v: string, prev: string[] = []) => [...prev, v];

interface QemuFlags {
  mem: number;
  cpus?: number;
  accel?: string;
  qemu?: string;
  disk?: string[];
  publish?: string[];
  networking: string;
  uefi?: boolean;
  iso?: boolean;
  squashfs?: boolean;
  kernel?: boolean;
  data?: string;
  dataFile?: string;
  state?: string;
  detached?: boolean;
  gui?: boolean;
  device?: string[];
  fw?: string;
  /** false with --no-pvh */
  pvh: boolean;
  /** false with --no-microvm */
  microvm: boolean;
}

export function runCommand(): Command {
  const run = new Command('run').description('Run a built system');
  run.addCommand(
    new Command('qemu')
      .description(
        'Boot a build in qemu: a kernel+initrd (or kernel+squashfs) DIR/NAME prefix, an .iso, or a disk image',
      )
      .argument('<path>', 'what to boot')
      .option('--mem <MB>', 'memory in MB', positiveInt, 1024)
      .option('--cpus <n>', 'number of CPUs (default: 2, or 1 on a one-core host)', positiveInt)
      .option('--disk <spec>', 'a disk, [file=]PATH[,size=N(G|M)][,format=raw|qcow2] (repeatable)', collect)
      .option('--publish <ports>', 'publish a guest port, HOST:GUEST[/tcp|/udp] (repeatable)', collect)
      .option('--networking <mode>', 'user, tap,IF, bridge,BR or none', 'user')
      .option('--uefi', 'boot with UEFI firmware (OVMF)')
      .option('--iso', 'PATH is a bootable ISO')
      .option('--squashfs', 'PATH is a kernel+squashfs prefix')
      .option('--kernel', 'PATH is a kernel+initrd prefix')
      .option('--data <string>', 'user data for the metadata package (as a metadata ISO)')
      .option('--data-file <file>', 'user data from a file')
      .option('--state <dir>', 'the VM state directory (default PATH-state)')
      .option('--detached', 'start the VM in the background; its pid goes to STATE/qemu.pid')
      .option(
        '--accel <accel>',
        'kvm or tcg (default: probe for a working KVM, else tcg; or LINUXKIT_QEMU_ACCEL)',
      )
      .option('--qemu <binary>', 'the qemu binary (default qemu-system-x86_64)')
      .option('--gui', 'show a graphical display instead of none')
      .option('--device <spec>', 'an extra qemu -device (repeatable)', collect)
      .option('--fw <file>', 'UEFI firmware code image (default /usr/share/OVMF/OVMF_CODE.fd)')
      .option(
        '--no-pvh',
        'under TCG, boot the bzImage itself (with KASLR) instead of its vmlinux through PVH (~0.5 s sooner)',
      )
      .option(
        '--no-microvm',
        'boot a kernel+initrd on q35 even where the microvm machine would do (under TCG, ~0.5 s sooner)',
      )
      .action(async (p: string, o: QemuFlags) => {
        if (o.accel !== undefined && o.accel !== 'kvm' && o.accel !== 'tcg') {
          throw new UserError(`--accel must be kvm or tcg, got ${JSON.stringify(o.accel)}`);
        }
        if (o.data !== undefined && o.dataFile !== undefined)
          throw new UserError('give -data or -data-file, not both');
        const forced = (['kernel', 'iso', 'squashfs'] as const).filter((k) => o[k]);
        if (forced.length > 1) throw new UserError(`-${forced.join(' and -')} contradict each other`);
        let data: Uint8Array | undefined;
        if (o.data !== undefined) data = new TextEncoder().encode(o.data);
        if (o.dataFile !== undefined) {
          try {
            data = readFileSync(o.dataFile);
          } catch (e) {
            throw new UserError(`cannot read -data-file ${o.dataFile}: ${(e as Error).message}`);
          }
        }
        const r = await runVm({
          path: p,
          kind: forced[0] as BootKind | undefined,
          stateDir: o.state,
          mem: o.mem,
          cpus: o.cpus,
          accel: o.accel as 'kvm' | 'tcg' | undefined,
          qemu: o.qemu,
          disks: (o.disk ?? []).map(parseDisk),
          publish: (o.publish ?? []).map(parsePublish),
          networking: parseNetworking(o.networking),
          uefi: o.uefi,
          fw: o.fw,
          data,
          detached: o.detached,
          gui: o.gui,
          devices: o.device,
          pvh: o.pvh,
          microvm: o.microvm,
        });
        if (r.pid !== undefined) process.stdout.write(`${r.pid}\n`);
        process.exitCode = r.code;
      }),
  );
  return run;
}

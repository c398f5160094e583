/**
 * qcow2 (QEMU copy-on-write v3, docs/interop/qcow2.txt) written from a sparse image: only the
 * clusters that hold non-zero data are allocated. All numbers are big-endian.
 *
 *   cluster 0: header (v3, 104 bytes) + end-of-extensions marker (8 zero bytes)
 *     0 magic "QFI\xfb"          4 version 3          8 backing_file_offset 0 (u64)
 *    16 backing_file_size 0 (u32)                     20 cluster_bits 16 (64 KiB clusters)
 *    24 size (virtual, u64)      32 crypt_method 0    36 l1_size (entries, u32)
 *    40 l1_table_offset (u64)    48 refcount_table_offset (u64)
 *    56 refcount_table_clusters (u32)                 60 nb_snapshots 0   64 snapshots_offset 0
 *    72 incompatible_features 0  80 compatible_features 0   88 autoclear_features 0
 *    96 refcount_order 4 (16-bit refcounts)           100 header_length 104
 *   then, each table starting on a cluster:
 *     refcount table: u64 offsets of refcount blocks (one block = 32768 u16 refcounts)
 *     refcount blocks: refcount 1 for every used cluster (header, tables, data)
 *     L1 table: u64 per 512 MiB of guest space = L2 offset | bit 63 (COPIED: refcount is 1)
 *     L2 tables: 8192 u64 per table = data cluster offset | bit 63; 0 = reads as zeros
 *     data clusters, in guest order
 */
import { Buffer } from 'node:buffer';
import { dataBlocks, ExtentWriter, type SparseImage, sparseImage } from './sparse.js';

const CLUSTER_BITS = 16;
const CLUSTER = 1 << CLUSTER_BITS;
const L2_ENTRIES = CLUSTER / 8;
const REFCOUNTS_PER_BLOCK = CLUSTER / 2;
const COPIED = 1n << 63n;

const clustersFor = (bytes: number) => Math.ceil(bytes / CLUSTER);

/** Encode `disk` as a qcow2 file, itself returned as a (dense) sparse image to write out. */
export function encodeQcow2(disk: SparseImage): SparseImage {
  // Only what to keep of each block (its bytes are a window that moves on).
  const data = Array.from(dataBlocks(disk, CLUSTER), ({ index, data }) => ({ index, data }));
  const l1Entries = Math.max(1, Math.ceil(disk.size / (CLUSTER * L2_ENTRIES)));
  const l2Used = [...new Set(data.map((d) => Math.floor(d.index / L2_ENTRIES)))];
  const l1Clusters = clustersFor(l1Entries * 8);

  // The refcount structures count themselves: grow them until they cover everything.
  const fixed = 1 + l1Clusters + l2Used.length + data.length;
  let rb = 1;
  let rt = 1;
  for (;;) {
    const total = fixed + rt + rb;
    const needRb = Math.ceil(total / REFCOUNTS_PER_BLOCK);
    const needRt = clustersFor(needRb * 8);
    if (needRb === rb && needRt === rt) break;
    rb = needRb;
    rt = needRt;
  }
  const total = fixed + rt + rb;

  const rtOffset = CLUSTER;
  const rbOffset = rtOffset + rt * CLUSTER;
  const l1Offset = rbOffset + rb * CLUSTER;
  const l2Offset = l1Offset + l1Clusters * CLUSTER;
  const dataOffset = l2Offset + l2Used.length * CLUSTER;

  const header = Buffer.alloc(CLUSTER);
  header.write('QFI\xfb', 0, 'latin1');
  header.writeUInt32BE(3, 4);
  header.writeUInt32BE(CLUSTER_BITS, 20);
  header.writeBigUInt64BE(BigInt(disk.size), 24);
  header.writeUInt32BE(l1Entries, 36);
  header.writeBigUInt64BE(BigInt(l1Offset), 40);
  header.writeBigUInt64BE(BigInt(rtOffset), 48);
  header.writeUInt32BE(rt, 56);
  header.writeUInt32BE(4, 96);
  header.writeUInt32BE(104, 100);

  const rtable = Buffer.alloc(rt * CLUSTER);
  for (let i = 0; i < rb; i++) rtable.writeBigUInt64BE(BigInt(rbOffset + i * CLUSTER), i * 8);
  const rblocks = Buffer.alloc(rb * CLUSTER);
  for (let i = 0; i < total; i++) rblocks.writeUInt16BE(1, i * 2);

  const l1 = Buffer.alloc(l1Clusters * CLUSTER);
  const l2Index = new Map<number, number>();
  l2Used.forEach((t, i) => {
    l2Index.set(t, i);
    l1.writeBigUInt64BE(BigInt(l2Offset + i * CLUSTER) | COPIED, t * 8);
  });
  const l2 = Buffer.alloc(l2Used.length * CLUSTER);

  const out = new ExtentWriter();
  out.put(header);
  out.put(rtable);
  out.put(rblocks);
  out.put(l1);
  out.put(l2);
  data.forEach((d, i) => {
    const table = l2Index.get(Math.floor(d.index / L2_ENTRIES))!;
    const at = table * CLUSTER + (d.index % L2_ENTRIES) * 8;
    l2.writeBigUInt64BE(BigInt(dataOffset + i * CLUSTER) | COPIED, at);
    out.put(d.data);
  });
  return sparseImage(out.pos, out.extents);
}

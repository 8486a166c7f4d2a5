/** Choosing the data plane's variant from what the kernel's probes said. */
import { describe, expect, it } from 'vitest';
import { chooseVariant, KernelUnsupportedError, PROBES, type KernelFeatures, type ProbeName } from '../../../src/datapath/features.ts';
import { ExitCode } from '../../../src/util/errors.ts';

function kernel(missing: ProbeName[], btf = true): KernelFeatures {
  const probes = Object.fromEntries(
    (Object.keys(PROBES) as ProbeName[]).map((p) => [p, missing.includes(p) ? { ok: false, error: 'Invalid argument' } : { ok: true }]),
  ) as KernelFeatures['probes'];
  return { release: '9.9.9-test', btf, probes };
}

describe('the variant for a kernel', () => {
  it.each([
    {
      description: 'everything (6.12 and newer): the fastest variant, the defaults of compat.h',
      input: kernel([]),
      expected: { defines: ['-DPT_HAVE_BPF_LOOP=1', '-DPT_HAVE_ATOMIC_FETCH=1', '-DPT_HAVE_KERN_CTX=1', '-DPT_HAVE_XDP_FRAGS=1'], loop: 'bpf_loop', skb: 'bpf_cast_to_kern_ctx' },
    },
    {
      description: 'no kfunc (6.1): the sk_buff is read with bpf_probe_read_kernel',
      input: kernel(['kern_ctx']),
      expected: { defines: ['-DPT_HAVE_BPF_LOOP=1', '-DPT_HAVE_ATOMIC_FETCH=1', '-DPT_HAVE_KERN_CTX=0', '-DPT_HAVE_XDP_FRAGS=1'], loop: 'bpf_loop', skb: 'bpf_probe_read_kernel' },
    },
    {
      description: 'neither bpf_loop, atomic fetch, kfunc nor frags (5.10): every fallback',
      input: kernel(['bpf_loop', 'atomic_fetch', 'kern_ctx', 'xdp_frags']),
      expected: { defines: ['-DPT_HAVE_BPF_LOOP=0', '-DPT_HAVE_ATOMIC_FETCH=0', '-DPT_HAVE_KERN_CTX=0', '-DPT_HAVE_XDP_FRAGS=0'], loop: 'bounded loop of a global function', skb: 'bpf_probe_read_kernel' },
    },
  ])('$description', ({ input, expected }) => {
    const c = chooseVariant(input);
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.defines).toEqual(expected.defines);
    expect(c.variant.loop).toBe(expected.loop);
    expect(c.variant.skb).toBe(expected.skb);
    expect(c.xdpFrags).toBe(expected.defines.includes('-DPT_HAVE_XDP_FRAGS=1'));
  });

  it.each([
    { description: 'no bpf_loop and no global functions', input: kernel(['bpf_loop', 'global_func']), expected: /lacks the bpf_loop\(\) helper \(5\.17\) and global BPF functions \(5\.6\), needed for cutting a frame larger than the MTU into pieces/ },
    { description: 'no kfunc and no probe read (lockdown)', input: kernel(['kern_ctx', 'probe_read_kernel']), expected: /lacks the bpf_cast_to_kern_ctx\(\) kfunc \(6\.2\) and bpf_probe_read_kernel\(\) in tc programs \(5\.5\), needed for reading a copy's checksum state/ },
    { description: 'no BTF', input: kernel([], false), expected: /lacks BTF type information \(\/sys\/kernel\/btf\/vmlinux, CONFIG_DEBUG_INFO_BTF\)/ },
    { description: 'array map values too small for the scratch cache', input: kernel(['large_map_values']), expected: /lacks BPF array maps with 74692-byte values, needed for the scratch cache/ },
  ])('refuses a kernel with $description, naming it and what is missing', ({ input, expected }) => {
    const c = chooseVariant(input);
    expect(c.ok).toBe(false);
    if (c.ok) return;
    const err = new KernelUnsupportedError(input.release, c.missing);
    expect(err.message).toMatch(/^kernel 9\.9\.9-test lacks /);
    expect(err.message).toMatch(expected);
    expect(err.exitCode).toBe(ExitCode.kernelUnsupported);
  });
});

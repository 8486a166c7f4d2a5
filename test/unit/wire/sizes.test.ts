/**
 * The wire arithmetic (src/wire/sizes.ts) against the C it mirrors: every
 * constant and every size bpf/include/consts.h and wire.h compute, read by
 * compiling the headers with clang for each kind of configuration, so the
 * TypeScript and the data plane cannot drift apart.
 */
import { describe, expect, it } from 'vitest';
import { META_VERSION, OPT_CLASS, OPT_TYPE_ANNOUNCE, OPT_TYPE_META } from '../../../src/wire/format.ts';
import {
  cacheValueSize, chunkMax, ETH_HLEN, FRAME_MAX, IP_MAX, IPV4_HLEN_MAX, IPV6_EXT_MAX, META_LEN, outerL3Len, PIECES_MAX,
  pieceMax, PREFIX_MAX, TUN_BASE_LEN, TUNNEL_KINDS, TUNNELS, UDP_LEN, type SizeParams,
} from '../../../src/wire/sizes.ts';
import { cConstants } from '../../helpers/c-constants.ts';

describe('sizes', () => {
  it.each([
    { description: 'Geneve over IPv4, MTU 1500', input: { mtu: 1500, outerV6: false, tunnel: 'Geneve' as const }, expected: { outer: 20 + 8 + 8 + 4 + META_LEN, piece: 1408, chunk: 1368, cache: 66916 } },
    { description: 'Geneve over IPv6, MTU 1500', input: { mtu: 1500, outerV6: true, tunnel: 'Geneve' as const }, expected: { outer: 40 + 8 + 8 + 4 + META_LEN, piece: 1388, chunk: 1352, cache: 66900 } },
    { description: 'VXLAN over IPv4, MTU 9000', input: { mtu: 9000, outerV6: false, tunnel: 'VXLAN' as const }, expected: { outer: 36, piece: 8964, chunk: 8928, cache: 74476 } },
    { description: 'Geneve over IPv4, MTU 1280', input: { mtu: 1280, outerV6: false, tunnel: 'Geneve' as const }, expected: { outer: 92, piece: 1188, chunk: 1152, cache: 66700 } },
  ])('$description', ({ input, expected }) => {
    expect(outerL3Len(input)).toBe(expected.outer);
    expect(pieceMax(input)).toBe(expected.piece);
    expect(chunkMax(input)).toBe(expected.chunk);
    expect(chunkMax(input) % 8).toBe(0);
    expect(cacheValueSize(input)).toBe(expected.cache);
  });
});

describe('the C headers agree (clang computes their side)', () => {
  it('on the fixed facts', async () => {
    const facts: [string, number][] = [
      ['PT_ETH_HLEN', ETH_HLEN],
      ['PT_IP_MAX', IP_MAX],
      ['PT_FRAME_MAX', FRAME_MAX],
      ['PT_IPV4_HLEN_MAX', IPV4_HLEN_MAX],
      ['PT_IPV6_EXT_MAX', IPV6_EXT_MAX],
      ['PT_PREFIX_MAX', PREFIX_MAX],
      ['PT_PIECES_MAX', PIECES_MAX],
      ['PT_UDP_LEN', UDP_LEN],
      ['PT_TUN_BASE_LEN', TUN_BASE_LEN],
      ['PT_META_LEN', META_LEN],
      ['sizeof(struct pt_meta)', META_LEN],
      ['PT_TUN_GENEVE', TUNNELS.Geneve.id],
      ['PT_TUN_VXLAN', TUNNELS.VXLAN.id],
      ['PT_OPT_CLASS', OPT_CLASS],
      ['PT_OPT_TYPE_META', OPT_TYPE_META],
      ['PT_OPT_TYPE_ANNOUNCE', OPT_TYPE_ANNOUNCE],
      ['PT_META_VERSION', META_VERSION],
    ];
    const c = await cConstants(facts.map(([e]) => e));
    expect(Object.fromEntries(facts.map(([e], i) => [e, c[i]]))).toEqual(Object.fromEntries(facts));
  });

  const configs: SizeParams[] = TUNNEL_KINDS.flatMap((tunnel) =>
    [false, true].flatMap((outerV6) => [1280, 1500, 9000, 9216].map((mtu) => ({ mtu, outerV6, tunnel }))),
  );
  it.each(configs)('on the sizes of $tunnel, outer IPv6 $outerV6, MTU $mtu', async (p) => {
    const sizes: [string, number][] = [
      ['PT_OUTER_L3_LEN', outerL3Len(p)],
      ['PT_PIECE_MAX', pieceMax(p)],
      ['PT_CHUNK_MAX', chunkMax(p)],
      // the header's own default, computed in C, against the TypeScript the agent passes with -D
      ['PT_CACHE_SIZE', cacheValueSize(p)],
      ['PT_TUNNEL_PORT', TUNNELS[p.tunnel].port],
    ];
    const defines = [`-DPT_MTU=${p.mtu}`, `-DPT_OUTER_V6=${p.outerV6 ? 1 : 0}`, `-DPT_TUNNEL=${TUNNELS[p.tunnel].id}`];
    const c = await cConstants(sizes.map(([e]) => e), defines);
    expect(Object.fromEntries(sizes.map(([e], i) => [e, c[i]]))).toEqual(Object.fromEntries(sizes));
  });
});

/**
 * A policy's direction in the data plane's terms: which tc hooks of a pod's
 * host-side veth the tap runs at (ingress there = packets the pod sends), and
 * which directions an announcement names for the collector.
 */
import type { Direction } from '../api/index.ts';
import type { Hook } from '../datapath/index.ts';

export function hooksFor(direction: Direction): Hook[] {
  return direction === 'Both' ? ['ingress', 'egress'] : direction === 'Ingress' ? ['ingress'] : ['egress'];
}

export function directionsOf(direction: Direction): ('Ingress' | 'Egress')[] {
  return direction === 'Both' ? ['Ingress', 'Egress'] : [direction];
}

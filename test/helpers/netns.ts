/** Test topologies: the lab's, re-exported for the tests. */
export * from '../lab/netns.ts';

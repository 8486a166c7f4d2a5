/** Test topologies: the lab's, re-exported for the tests. */
export * from '../../src/lab/netns.ts';

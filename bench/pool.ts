/** Run @fn over @items with at most @n in flight (the benches' concurrent writers). */
export async function pool<T>(items: Iterable<T>, n: number, fn: (x: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  await Promise.all(Array.from({ length: n }, async () => {
    for (let x = it.next(); !x.done; x = it.next()) await fn(x.value);
  }));
}

// Observers of a module's committed changes (e.g. to invalidate a shared cache, or to wake
// other processes' change streams). They are kept per pool, so every writer on it (REST,
// GraphQL, imports) reaches them without passing them around.
import type { Db } from './db.ts';

export type ChangeObservers<T> = Readonly<{
  // Returns how to stop observing.
  observe: (db: Db, observer: (change: T) => Promise<void>) => () => void;
  // Called after a change has committed; resolves when every observer has run.
  changed: (db: Db, change: T) => Promise<void>;
}>;

export function changeObservers<T>(): ChangeObservers<T> {
  const observers = new WeakMap<Db, Set<(change: T) => Promise<void>>>();
  return {
    observe: (db, observer) => {
      const set = observers.get(db) ?? new Set();
      observers.set(db, set);
      set.add(observer);
      return () => set.delete(observer);
    },
    changed: async (db, change) => {
      const set = observers.get(db);
      if (set) await Promise.all([...set].map((observer) => observer(change)));
    },
  };
}

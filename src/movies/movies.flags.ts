// Flags of the movies module: the demo data of a development database, and how many rows
// `seed movies` inserts.
import { bool, int } from '../platform/flags.ts';

export const moviesFlags = {
  'seed-demo-data': bool({
    default: 'true',
    help: 'in development on the embedded database: seed demo movies into an empty table and create the demo account',
  }),
  count: int({ default: '100', help: 'how many rows `seed movies` inserts' }),
};

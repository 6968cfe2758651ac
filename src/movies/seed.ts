// Sample movies for demos and benchmarks.
import type { Db } from '../platform/db.ts';
import type { MovieFields } from './movie.ts';
import { insertMovies } from './movies.sql.ts';

// A handful of real films: what a newcomer sees on first start.
export const DEMO_MOVIES: readonly MovieFields[] = [
  { title: 'Moana', year: 2016, runtime: 107, genres: ['animation', 'adventure'] },
  { title: 'Black Panther', year: 2018, runtime: 134, genres: ['action', 'adventure'] },
  { title: 'Deadpool', year: 2016, runtime: 108, genres: ['action', 'comedy'] },
  { title: 'The Breakfast Club', year: 1985, runtime: 97, genres: ['comedy', 'drama'] },
  { title: 'Casablanca', year: 1942, runtime: 102, genres: ['drama', 'romance', 'war'] },
  { title: 'Alien', year: 1979, runtime: 117, genres: ['horror', 'sci-fi'] },
  { title: 'The Empire Strikes Back', year: 1980, runtime: 124, genres: ['action', 'sci-fi'] },
  { title: 'Spirited Away', year: 2001, runtime: 125, genres: ['animation', 'fantasy'] },
  { title: 'Parasite', year: 2019, runtime: 132, genres: ['comedy', 'drama', 'thriller'] },
  { title: 'The Club', year: 2015, runtime: 98, genres: ['drama'] },
];

const GENRES = [
  'action',
  'adventure',
  'animation',
  'comedy',
  'crime',
  'documentary',
  'drama',
  'family',
  'fantasy',
  'history',
  'horror',
  'music',
  'mystery',
  'romance',
  'sci-fi',
  'thriller',
  'war',
  'western',
];
const ADJECTIVES = [
  'Silent',
  'Crimson',
  'Last',
  'Hidden',
  'Broken',
  'Golden',
  'Midnight',
  'Lost',
  'Eternal',
  'Wild',
  'Frozen',
  'Burning',
  'Distant',
  'Secret',
  'Final',
  'Iron',
  'Electric',
  'Hollow',
  'Velvet',
  'Savage',
];
const NOUNS = [
  'River',
  'Empire',
  'Garden',
  'Harbor',
  'Kingdom',
  'Signal',
  'Orchard',
  'Frontier',
  'Mirror',
  'Station',
  'Voyage',
  'Summer',
  'Detective',
  'Symphony',
  'Island',
  'Machine',
  'Horizon',
  'Winter',
  'Stranger',
  'Club',
];
const SUFFIXES = [
  '',
  '',
  '',
  ' II',
  ' Returns',
  ' of the North',
  ': Origins',
  ' at Dawn',
  ' in Paris',
  ' Rising',
];

const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)] as T;

export function generateMovies(count: number, now = new Date()): MovieFields[] {
  return Array.from({ length: count }, () => {
    const genres = new Set<string>();
    const wanted = 1 + Math.floor(Math.random() * 3);
    while (genres.size < wanted) genres.add(pick(GENRES));
    return {
      title: `The ${pick(ADJECTIVES)} ${pick(NOUNS)}${pick(SUFFIXES)}`,
      year: 1920 + Math.floor(Math.random() * (now.getFullYear() - 1919)),
      runtime: 75 + Math.floor(Math.random() * 110),
      genres: [...genres],
    };
  });
}

export async function seedMovies(db: Db, movies: readonly MovieFields[]): Promise<number> {
  let inserted = 0;
  for (let i = 0; i < movies.length; i += 1000) inserted += await insertMovies(db, movies.slice(i, i + 1000));
  return inserted;
}

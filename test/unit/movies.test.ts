// The movie rules that need no database: validateMovie (src/movies/movie.ts) and the list's
// query string and paging metadata (src/movies/filters.ts), called directly.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { calculateMetadata, readMovieListQuery } from '../../src/movies/filters.ts';
import { type MovieFields, validateMovie } from '../../src/movies/movie.ts';
import { fieldErrors } from './field-errors.ts';

function refusals(movie: Partial<MovieFields>, now?: Date): Record<string, string> {
  return fieldErrors(() => validateMovie(movie, now));
}

function listRefusals(qs: Record<string, string | string[]>): Record<string, string> {
  return fieldErrors(() => readMovieListQuery(qs));
}

const ARRIVAL: MovieFields = { title: 'Arrival', year: 2016, runtime: 116, genres: ['drama', 'sci-fi'] };

describe('validateMovie', () => {
  test('when every field is left out, then every field is refused at once with "must be provided"', () => {
    assert.deepEqual(refusals({}), {
      title: 'must be provided',
      year: 'must be provided',
      runtime: 'must be provided',
      genres: 'must be provided',
    });
  });

  test('when the year is next year, then it is in the future; this year is accepted', () => {
    const now = new Date(2030, 0, 1);
    assert.deepEqual(refusals({ ...ARRIVAL, year: 2031 }, now), { year: 'must not be in the future' });
    assert.deepEqual(refusals({ ...ARRIVAL, year: 2030 }, now), {});
  });

  test('when the year is before 1888, then it is refused; 1888 is accepted', () => {
    assert.deepEqual(refusals({ ...ARRIVAL, year: 1887 }), { year: 'must be greater than 1888' });
    assert.deepEqual(refusals({ ...ARRIVAL, year: 1888 }), {});
  });

  test('when the runtime is negative, then it must be a positive integer', () => {
    assert.deepEqual(refusals({ ...ARRIVAL, runtime: -1 }), { runtime: 'must be a positive integer' });
  });

  test('when genres is an empty list, then it needs at least one genre', () => {
    assert.deepEqual(refusals({ ...ARRIVAL, genres: [] }), { genres: 'must contain at least 1 genre' });
  });

  test('when any genre appears twice, then the genres are refused as duplicates', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (genres, pick) => {
          const twice = [...genres, genres[pick % genres.length] as string];
          assert.deepEqual(refusals({ ...ARRIVAL, genres: twice }), {
            genres: 'must not contain duplicate values',
          });
        },
      ),
    );
  });

  test('when a movie is made of valid parts, then it is accepted whatever they are', () => {
    const now = new Date();
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 100 }).filter((s) => !s.includes('\u0000')),
        fc.integer({ min: 1888, max: now.getFullYear() }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.uniqueArray(
          fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.includes('\u0000')),
          { minLength: 1, maxLength: 5 },
        ),
        (title, year, runtime, genres) => {
          assert.deepEqual(refusals({ title, year, runtime, genres }, now), {});
        },
      ),
    );
  });

  test('when the title or a genre holds NUL, then it is refused (PostgreSQL cannot store it)', () => {
    assert.deepEqual(refusals({ ...ARRIVAL, title: 'a\u0000b', genres: ['x\u0000'] }), {
      title: 'must not contain the NUL character',
      genres: 'must not contain the NUL character',
    });
  });

  test('when a field breaks two rules, then only its first message is given', () => {
    assert.deepEqual(refusals({ ...ARRIVAL, genres: ['a', 'a', 'b', 'c', 'd', 'e'] }), {
      genres: 'must not contain more than 5 genres',
    });
  });
});

describe('readMovieListQuery', () => {
  test('when nothing is given, then the first page of 20 by id, with no filters', () => {
    assert.deepEqual(readMovieListQuery({}), { title: '', genres: [], page: 1, pageSize: 20, sort: 'id' });
  });

  test('when a key is repeated, then its first value counts, as Go url.Values.Get', () => {
    assert.equal(readMovieListQuery({ page: ['2', 'x'], genres: ['drama,comedy', 'x'] }).page, 2);
    assert.deepEqual(readMovieListQuery({ genres: ['drama,comedy', 'x'] }).genres, ['drama', 'comedy']);
  });

  test('when page has a plus sign or leading zeros, then it is read as Go strconv.Atoi does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), fc.constantFrom('', '+', '0'), (page, prefix) => {
        assert.equal(readMovieListQuery({ page: `${prefix}${page}` }).page, page);
      }),
    );
  });

  test('when page is not an integer or past int64, then "must be an integer value"', () => {
    for (const page of ['1.5', '1e3', ' 1', '0x10', 'one', '9223372036854775808', '-9223372036854775809']) {
      assert.deepEqual(listRefusals({ page }), { page: 'must be an integer value' }, page);
    }
  });

  test('when page is an int64 past 10 million, then it is refused as too large, not as a non-integer', () => {
    assert.deepEqual(listRefusals({ page: '9223372036854775807' }), {
      page: 'must be a maximum of 10 million',
    });
  });

  test('when sort is not in the safelist, then "invalid sort value"', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (sort) => {
        fc.pre(!['id', 'title', 'year', 'runtime'].includes(sort.replace(/^-/, '')));
        assert.deepEqual(listRefusals({ sort }), { sort: 'invalid sort value' });
      }),
    );
  });
});

describe('calculateMetadata', () => {
  test('when there are no records, then the metadata is empty', () => {
    assert.deepEqual(calculateMetadata(0, 1, 20), {});
  });

  test('when there are records, then the last page is the first that reaches the last record', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 ** 9 }), fc.integer({ min: 1, max: 100 }), (total, size) => {
        const metadata = calculateMetadata(total, 1, size);
        assert.ok('last_page' in metadata);
        assert.ok(metadata.last_page * size >= total);
        assert.ok((metadata.last_page - 1) * size < total);
      }),
    );
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildTestApp, createMovie, type Movie } from './helpers.ts';

const { api } = await buildTestApp();

// Fixed data: this file's database holds only these movies.
const seeded: Movie[] = [];
for (const fields of [
  { title: 'The Breakfast Club', year: 1985, runtime: '97 mins', genres: ['comedy', 'drama'] },
  { title: 'The Club', year: 2015, runtime: '98 mins', genres: ['drama'] },
  { title: 'Alien', year: 1979, runtime: '117 mins', genres: ['horror', 'sci-fi'] },
  { title: 'Moana', year: 2016, runtime: '107 mins', genres: ['animation', 'adventure'] },
  { title: 'Black Panther', year: 2018, runtime: '134 mins', genres: ['action', 'adventure'] },
  { title: 'Deadpool', year: 2016, runtime: '108 mins', genres: ['action', 'comedy'] },
]) {
  seeded.push(await createMovie(api, fields));
}

async function list(query: string) {
  const res = await api(`/v1/movies${query}`);
  return {
    status: res.statusCode,
    body: res.json() as { metadata: Record<string, number>; movies: Movie[] },
  };
}

const titles = (movies: Movie[]) => movies.map((m) => m.title);

describe('GET /v1/movies filters', () => {
  test('when no filter is given, then every movie by id with metadata', async () => {
    const { status, body } = await list('');
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body), ['metadata', 'movies']);
    assert.deepEqual(body.movies, seeded);
    assert.deepEqual(body.metadata, {
      current_page: 1,
      page_size: 20,
      first_page: 1,
      last_page: 1,
      total_records: 6,
    });
  });

  test('when title is a word, then full-text search matches it anywhere, case-insensitively', async () => {
    const { body } = await list('?title=CLUB');
    assert.deepEqual(titles(body.movies), ['The Breakfast Club', 'The Club']);
  });

  test('when title has several words, then all must match', async () => {
    const { body } = await list('?title=the+club');
    assert.deepEqual(titles(body.movies), ['The Breakfast Club', 'The Club']);
    const none = await list('?title=the+alien');
    assert.deepEqual(none.body, { metadata: {}, movies: [] });
  });

  test('when genres are given, then movies must have all of them', async () => {
    assert.deepEqual(titles((await list('?genres=adventure')).body.movies), ['Moana', 'Black Panther']);
    assert.deepEqual(titles((await list('?genres=action,comedy')).body.movies), ['Deadpool']);
    assert.deepEqual(titles((await list('?genres=comedy&title=club')).body.movies), ['The Breakfast Club']);
  });

  const sorts: [string, string[]][] = [
    ['id', ['The Breakfast Club', 'The Club', 'Alien', 'Moana', 'Black Panther', 'Deadpool']],
    ['-id', ['Deadpool', 'Black Panther', 'Moana', 'Alien', 'The Club', 'The Breakfast Club']],
    ['title', ['Alien', 'Black Panther', 'Deadpool', 'Moana', 'The Breakfast Club', 'The Club']],
    ['-title', ['The Club', 'The Breakfast Club', 'Moana', 'Deadpool', 'Black Panther', 'Alien']],
    // Moana and Deadpool share 2016: the id tie-break keeps Moana first both ways.
    ['year', ['Alien', 'The Breakfast Club', 'The Club', 'Moana', 'Deadpool', 'Black Panther']],
    ['-year', ['Black Panther', 'Moana', 'Deadpool', 'The Club', 'The Breakfast Club', 'Alien']],
    ['runtime', ['The Breakfast Club', 'The Club', 'Moana', 'Deadpool', 'Alien', 'Black Panther']],
    ['-runtime', ['Black Panther', 'Alien', 'Deadpool', 'Moana', 'The Club', 'The Breakfast Club']],
  ];
  for (const [sort, expected] of sorts) {
    test(`when sort=${sort}, then that order with id as tie-break`, async () => {
      assert.deepEqual(titles((await list(`?sort=${sort}`)).body.movies), expected);
    });
  }

  test('when paginating, then metadata says where we are', async () => {
    const page2 = await list('?page=2&page_size=4');
    assert.deepEqual(titles(page2.body.movies), ['Black Panther', 'Deadpool']);
    assert.deepEqual(page2.body.metadata, {
      current_page: 2,
      page_size: 4,
      first_page: 1,
      last_page: 2,
      total_records: 6,
    });
  });

  test('when the page is past the end, then empty metadata and movies', async () => {
    const { status, body } = await list('?page=3&page_size=4');
    assert.equal(status, 200);
    assert.deepEqual(body, { metadata: {}, movies: [] });
  });

  const invalid: [string, Record<string, string>][] = [
    ['?page=abc', { page: 'must be an integer value' }],
    ['?page=0', { page: 'must be greater than zero' }],
    ['?page=10000001', { page: 'must be a maximum of 10 million' }],
    ['?page_size=x', { page_size: 'must be an integer value' }],
    ['?page_size=-1', { page_size: 'must be greater than zero' }],
    ['?page_size=101', { page_size: 'must be a maximum of 100' }],
    ['?sort=rating', { sort: 'invalid sort value' }],
    ['?sort=id;DROP TABLE movies', { sort: 'invalid sort value' }],
    [
      '?page=1.5&page_size=0&sort=-',
      {
        page: 'must be an integer value',
        page_size: 'must be greater than zero',
        sort: 'invalid sort value',
      },
    ],
  ];
  for (const [query, error] of invalid) {
    test(`when the query is ${query}, then 422 naming the field`, async () => {
      const res = await api(`/v1/movies${encodeURI(query)}`);
      assert.equal(res.statusCode, 422);
      assert.deepEqual(res.json(), { error });
    });
  }

  test('when a key repeats, then its first value counts (like Go)', async () => {
    assert.deepEqual(titles((await list('?sort=-id&sort=id&page_size=1')).body.movies), ['Deadpool']);
  });
});

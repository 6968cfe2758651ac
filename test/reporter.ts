// node:test's spec reporter with the run's summary (the top-level "ℹ tests …" lines) moved
// to the very end. The spec reporter prints the details of failed and todo tests after the
// summary; with this reporter a run always ends with its counts.
import { Readable } from 'node:stream';
import { spec as SpecReporter } from 'node:test/reporters';
import { stripVTControlCharacters } from 'node:util';

export default async function* specWithSummaryLast(source: AsyncIterable<unknown>): AsyncGenerator<string> {
  const summary: string[] = [];
  for await (const chunk of Readable.from(source).pipe(new SpecReporter())) {
    const text = String(chunk);
    if (stripVTControlCharacters(text).startsWith('ℹ ')) summary.push(text);
    else yield text;
  }
  yield* summary;
}

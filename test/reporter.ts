// node:test's spec reporter, changed in two ways for a newcomer reading a run:
// - a failing `test.todo` (a documented known divergence) is listed under its own heading,
//   "⚠ known divergences (todo)"; the spec reporter lists it under "✖ failing tests", which
//   here keeps only real failures. The exit code is the runner's and is unchanged.
// - the run's summary (the top-level "ℹ tests …" lines) comes at the very end, so a run always
//   ends with its counts.
import type { TestEvent } from 'node:test/reporters';
import { spec as SpecReporter } from 'node:test/reporters';
import { stripVTControlCharacters, styleText } from 'node:util';

type Event = TestEvent & { data: { file?: string } };

// The spec reporter's list of the failures given, as it writes it at the end of a run (each
// with its location and error), under `heading` instead of its own.
function failureList(heading: string, failures: Event[]): string {
  if (failures.length === 0) return '';
  const reporter = new SpecReporter();
  for (const event of failures) reporter.write(event);
  reporter.read(); // the failures' one-line reports, already written in their place
  const root = { type: 'test:summary', data: { success: false, counts: {}, duration_ms: 0 } };
  reporter.write(root);
  const list = String(reporter.read());
  return `\n${heading}\n${list.slice(list.indexOf('\n', 1) + 1)}`;
}

// 'subtestsFailed' marks a parent failed only by its children, which are listed themselves.
function failureType(event: Extract<TestEvent, { type: 'test:fail' }>): unknown {
  return (event.data.details.error as Error & { failureType?: string }).failureType;
}

export default async function* specWithSummaryLast(source: AsyncIterable<Event>): AsyncGenerator<string> {
  const spec = new SpecReporter();
  const failures: Event[] = [];
  const divergences: Event[] = [];
  const summary: string[] = [];
  for await (const event of source) {
    if (event.type === 'test:fail' && failureType(event) !== 'subtestsFailed') {
      (event.data.todo === undefined ? failures : divergences).push(event);
    }
    // The root summary is where the spec reporter lists failures; the lists are written below.
    if (event.type === 'test:summary' && event.data.file === undefined) continue;
    // Driven event by event and never ended, so the spec reporter's own list (written when it
    // ends) is never printed.
    spec.write(event);
    const text = String(spec.read() ?? '');
    if (stripVTControlCharacters(text).startsWith('ℹ ')) summary.push(text);
    else if (text) yield text;
  }
  yield failureList(styleText('red', '✖ failing tests:'), failures);
  yield failureList(styleText('yellow', '⚠ known divergences (todo):'), divergences);
  yield* summary;
}

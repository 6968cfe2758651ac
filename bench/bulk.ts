// Scenario B1: one import of `rows` generated movies, streamed as NDJSON, then the export of
// them (filtered by their genre) read to the end; rows a second each way.
import { Readable } from 'node:stream';

export type BulkResult = {
  rows: number;
  upload_bytes: number;
  import_rows_per_s: number;
  import_failed: number;
  export_rows_per_s: number;
  export_bytes: number;
};

async function* ndjson(rows: number, genre: string): AsyncGenerator<Buffer> {
  for (let n = 0; n < rows; n += 1000) {
    let chunk = '';
    for (let k = n; k < Math.min(n + 1000, rows); k++) {
      chunk += `${JSON.stringify({ title: `Bench import ${k}`, year: 1990 + (k % 30), runtime: `${80 + (k % 70)} mins`, genres: [genre, 'drama'] })}\n`;
    }
    yield Buffer.from(chunk);
  }
}

export async function runBulk(url: string, token: string, rows: number): Promise<BulkResult> {
  const genre = `bench-${Date.now()}`;
  let uploadBytes = 0;
  const counted = async function* () {
    for await (const chunk of ndjson(rows, genre)) {
      uploadBytes += chunk.length;
      yield chunk;
    }
  };
  const authorization = `Bearer ${token}`;
  const importStart = performance.now();
  const imported = await fetch(`${url}/v1/movies/import`, {
    method: 'POST',
    headers: { authorization },
    body: Readable.toWeb(Readable.from(counted())) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const report = (await imported.json()) as { imported: number; failed: number };
  const importSeconds = (performance.now() - importStart) / 1000;
  if (imported.status !== 200) throw new Error(`import: ${imported.status} ${JSON.stringify(report)}`);

  const exportStart = performance.now();
  const exported = await fetch(`${url}/v1/movies/export?genres=${genre}`, {
    headers: { authorization, 'accept-encoding': 'identity' },
  });
  let exportBytes = 0;
  let exportRows = 0;
  for await (const chunk of exported.body as unknown as AsyncIterable<Uint8Array>) {
    exportBytes += chunk.length;
    for (const byte of chunk) if (byte === 10) exportRows++;
  }
  const exportSeconds = (performance.now() - exportStart) / 1000;
  if (exportRows !== report.imported) throw new Error(`export: ${exportRows} rows of ${report.imported}`);
  return {
    rows,
    upload_bytes: uploadBytes,
    import_rows_per_s: Math.round(report.imported / importSeconds),
    import_failed: report.failed,
    export_rows_per_s: Math.round(exportRows / exportSeconds),
    export_bytes: exportBytes,
  };
}

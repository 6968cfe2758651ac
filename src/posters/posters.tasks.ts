// The scheduled tasks of posters (run by src/tasks; background.ts lists every module's).
import type { Task } from '../tasks/task.ts';
import { createPosters, purgePosterObjects } from './posters.ts';

export const POSTERS_TASKS: readonly Task[] = [
  {
    // Stored posters whose removal failed (or whose upload died) are retried here.
    name: 'purge-poster-objects',
    cron: '*/5 * * * *',
    run: async ({ db, config, logger }) => {
      const posters = createPosters(db, config.posters, logger);
      let deleted = 0;
      for (
        let batch = await purgePosterObjects(posters);
        batch > 0;
        batch = await purgePosterObjects(posters)
      ) {
        deleted += batch;
      }
      return { deleted };
    },
  },
];

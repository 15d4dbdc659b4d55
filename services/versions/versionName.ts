/**
 * Job version names (`v1`, `v2-new-filter`): they name the speed view topic
 * (`views.speed.<version>`), the consumer group, checkpoints and batch views, so every layer
 * checks them with this one rule and says the same thing when a name breaks it.
 */
import { z } from 'zod';

export const VERSION_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

export const VERSION_NAME_RULE = 'a version name like v1 (lowercase letters, digits, _ and -, at most 32 characters)';

export const versionNameSchema = z.string().regex(VERSION_NAME, `must be ${VERSION_NAME_RULE}`);

export function isVersionName(value: string): boolean {
  return VERSION_NAME.test(value);
}

import { EXPORT_FORMATS } from '../../common/statuses.ts';
import * as z from '../schema.ts';
import { filenameSchema } from '../storage/keys.ts';

export const startExportBody = z.object({
  filename: filenameSchema,
  format: z._default(z.enum(EXPORT_FORMATS), 'raw'),
});

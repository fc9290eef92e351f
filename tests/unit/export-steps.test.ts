import { MAX_PARTS, MiB, TiB } from '../../common/part-plan.ts';
import { exportStepSize } from '../../lib/exports/exports.ts';

describe('export step size', () => {
  it('uses the configured size, and the whole file when it is smaller', () => {
    expect(exportStepSize(1024 * MiB, 64 * MiB)).toBe(64 * MiB);
    expect(exportStepSize(10, 64 * MiB)).toBe(10);
    expect(exportStepSize(0, 64 * MiB)).toBe(1);
  });

  it('grows so that a 5 TiB source still fits in 10,000 parts', () => {
    const step = exportStepSize(5 * TiB, 64 * MiB);
    expect(Math.ceil((5 * TiB) / step)).toBeLessThanOrEqual(MAX_PARTS);
    expect(step % MiB).toBe(0);
    expect(exportStepSize(700 * 1024 * MiB, 64 * MiB)).toBeGreaterThan(64 * MiB);
  });
});

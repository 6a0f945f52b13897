/**
 * Which samples the demo audits: the demo model (five shapes) gets the shapes, real weights get the
 * photos, and an explicit --samples is taken as given. Photos are out-of-distribution for the demo
 * model, which would label a cat with a shape and undermine what the audit is for.
 */
import { describe, expect, it } from 'vitest';
import { DEMO_MODEL, DEMO_SAMPLES, resolveDemoOptions } from '../../../src/demo/options.js';
import { stepPrinter } from '../../../src/demo/demo.js';

describe('demo samples', () => {
  it('keeps photos away from the demo model and shapes away from real VGG16, saying why', () => {
    const demo = resolveDemoOptions({}, {});
    expect(demo).toMatchObject({ weights: DEMO_MODEL, samples: DEMO_SAMPLES.shapes });
    expect(demo.samplesNote).toMatch(/out-of-distribution/);
    const vgg = resolveDemoOptions({ weights: '/m/vgg16_weights_tf_dim_ordering_tf_kernels.h5' }, {});
    expect(vgg).toMatchObject({ samples: DEMO_SAMPLES.photos, labels: undefined });
    expect(vgg.samplesNote).toMatch(/photos only/);
    expect(resolveDemoOptions({ samples: '/data/mine' }, {})).toMatchObject({ samples: '/data/mine', samplesNote: null });
  });

  it('prints start-up steps with the seconds since the start, and knows how long it has been quiet', () => {
    const lines: string[] = [];
    const step = stepPrinter(performance.now() - 2_500, (l) => lines.push(l));
    step('worker', 'loading model');
    expect(lines[0]).toBe('[  2.5s] worker    loading model');
    expect(step.quietMs()).toBeLessThan(1_000);
  });
});

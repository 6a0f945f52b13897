/**
 * Writes Keras Functional model configs (the JSON `model.to_json()` produces, Keras 2 node format)
 * from code, so the `keras.applications` layouts are described the way a full-model file would
 * describe them and go through the one Keras graph converter (`graph/from-keras.ts`).
 */
import type { Json } from '../keras-config.js';

export class FunctionalConfig {
  private readonly layers: Json[] = [];

  constructor(private readonly name: string) {}

  /** The InputLayer; returns its name, the first layer's input. */
  input(name: string, shape: [number, number, number]): string {
    this.layers.push({ class_name: 'InputLayer', name, config: { batch_input_shape: [null, ...shape], dtype: 'float32', sparse: false, ragged: false, name }, inbound_nodes: [] });
    return name;
  }

  /** A layer called once on `inputs`; returns its name, which is also its output's name. */
  layer(className: string, name: string, config: Json, inputs: string[]): string {
    this.layers.push({
      class_name: className,
      name,
      config: { name, trainable: true, dtype: 'float32', ...config },
      inbound_nodes: [inputs.map((i) => [i, 0, 0, {}])],
    });
    return name;
  }

  conv(name: string, input: string, filters: number, kernel: number, options: { strides?: number; padding?: 'same' | 'valid'; useBias?: boolean; activation?: string } = {}): string {
    const s = options.strides ?? 1;
    return this.layer(
      'Conv2D',
      name,
      {
        filters,
        kernel_size: [kernel, kernel],
        strides: [s, s],
        padding: options.padding ?? 'valid',
        data_format: 'channels_last',
        dilation_rate: [1, 1],
        groups: 1,
        activation: options.activation ?? 'linear',
        use_bias: options.useBias ?? true,
      },
      [input],
    );
  }

  batchNorm(name: string, input: string, epsilon: number, momentum = 0.99): string {
    return this.layer('BatchNormalization', name, { axis: 3, momentum, epsilon, center: true, scale: true }, [input]);
  }

  activation(name: string, input: string, activation: string): string {
    return this.layer('Activation', name, { activation }, [input]);
  }

  zeroPad(name: string, input: string, padding: [[number, number], [number, number]]): string {
    return this.layer('ZeroPadding2D', name, { padding, data_format: 'channels_last' }, [input]);
  }

  /** `{class_name: "Functional", config}` with this input and output. */
  build(input: string, output: string): Json {
    return {
      class_name: 'Functional',
      config: { name: this.name, layers: this.layers, input_layers: [[input, 0, 0]], output_layers: [[output, 0, 0]] },
    };
  }
}

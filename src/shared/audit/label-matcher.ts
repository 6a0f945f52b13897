/**
 * Ground-truth labels → model class indices. A label matches by class index (`"281"`), by WordNet
 * id (`n02123045`, any case) or by name, ignoring case, and treating `_`, `-` and runs of spaces
 * alike (`Tabby_Cat` = `tabby cat`). A name shared by several classes (ImageNet has two "crane"s)
 * matches none of them: use the index or wnid there. A label that matches nothing is counted, once
 * per distinct label, in audit.json's `unmatchedLabels`.
 */

export interface ClassName {
  label?: string;
  wnid?: string;
}

export function normaliseLabel(label: string): string {
  return label.trim().toLowerCase().replace(/[\s_-]+/g, ' ');
}

export class LabelMatcher {
  private readonly byName = new Map<string, number>();
  private readonly byWnid = new Map<string, number>();
  private readonly ambiguous = new Set<string>();

  constructor(
    classes: readonly ClassName[] | null,
    /** Number of classes of the model (for index labels). */
    readonly numClasses: number,
  ) {
    classes?.forEach((c, i) => {
      if (c.wnid !== undefined) this.byWnid.set(c.wnid.toLowerCase(), i);
      if (c.label === undefined) return;
      const n = normaliseLabel(c.label);
      if (this.byName.has(n)) this.ambiguous.add(n);
      else this.byName.set(n, i);
    });
    for (const n of this.ambiguous) this.byName.delete(n);
  }

  /** The class a label names, or null. */
  match(label: string): number | null {
    const t = label.trim();
    if (/^\d+$/.test(t)) {
      const i = Number(t);
      return i < this.numClasses ? i : null;
    }
    const wnid = this.byWnid.get(t.toLowerCase());
    if (wnid !== undefined) return wnid;
    return this.byName.get(normaliseLabel(t)) ?? null;
  }
}

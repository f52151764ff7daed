// Helpers for tests that drive Paddock through the official SDKs.

/** The error a call failed with (and a test failure when it did not fail). */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

/** Reads a stream to its end or its failure, keeping what arrived before. */
export async function drain<T>(stream: AsyncIterable<T>): Promise<{ items: T[]; error: unknown }> {
  const items: T[] = [];
  try {
    for await (const item of stream) items.push(item);
    return { items, error: undefined };
  } catch (error) {
    return { items, error };
  }
}

/** The event types of a Responses API stream's text message, sent in `deltas` pieces. */
export function textItemEvents(deltas: number): string[] {
  return [
    'response.output_item.added',
    'response.content_part.added',
    ...Array.from({ length: deltas }, () => 'response.output_text.delta'),
    'response.output_text.done',
    'response.content_part.done',
    'response.output_item.done',
  ];
}

/** The event types of a whole Responses API stream that answers one text message. */
export function textResponseEvents(deltas: number): string[] {
  return ['response.created', 'response.in_progress', ...textItemEvents(deltas), 'response.completed'];
}

/** The pipeline's bounded stages (uploads) use the project's one semaphore. */
export { Semaphore } from '../../shared/semaphore.js';

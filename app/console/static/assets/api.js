// The SenseTime v1 API, called exactly as any client calls it: POST, parameters (credentials
// included) in a multipart body, so the secret never sits in a URL. The credentials live in
// sessionStorage: this tab only, gone when it closes.

const STORE_KEY = "facesrv.console.credentials";
export const SIGNED_OUT = "facesrv:signed-out"; // a window event, its detail the ApiError
const TASK_POLL_MS = 500;

export class ApiError extends Error {
  constructor(httpStatus, body) {
    super(body.reason ? `${body.status}: ${body.reason}` : body.status);
    this.httpStatus = httpStatus;
    this.status = body.status;
    this.reason = body.reason;
  }
}

export function credentials() {
  return JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
}

export function forget() {
  sessionStorage.removeItem(STORE_KEY);
  thumbnails.clear();
}

/** Check the pair with /info/api and keep it for the session; throws ApiError when refused. */
export async function signIn(apiId, apiSecret) {
  const info = await post("info/api", {}, { api_id: apiId, api_secret: apiSecret });
  sessionStorage.setItem(STORE_KEY, JSON.stringify({ api_id: apiId, api_secret: apiSecret }));
  return info;
}

function form(params, creds) {
  if (!creds) throw new ApiError(401, { status: "UNAUTHORIZED", reason: "signed out" });
  const body = new FormData();
  body.set("api_id", creds.api_id);
  body.set("api_secret", creds.api_secret);
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    // Lists go comma-joined, one of the seed's spellings.
    body.set(key, Array.isArray(value) ? value.join(",") : value);
  }
  return body;
}

// The rate-limit headers of the latest answer (every API answer carries them).
export const rate = { limit: null, remaining: null, reset: null };

async function post(path, params, given = null) {
  const response = await fetch(path, { method: "POST", body: form(params, given || credentials()) });
  for (const key of Object.keys(rate)) {
    const value = response.headers.get(`X-RateLimit-${key[0].toUpperCase()}${key.slice(1)}`);
    if (value !== null) rate[key] = Number(value);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    body = { status: "INTERNAL_ERROR", reason: `HTTP ${response.status} without a JSON body` };
  }
  if (!response.ok || body.status !== "OK") {
    const error = new ApiError(response.status, body);
    // The session's credentials stopped opening the account (secret rotated, account disabled
    // or expired): forget them; the shell goes back to sign-in and says why.
    if (response.status === 401 && !given) {
      forget();
      window.dispatchEvent(new CustomEvent(SIGNED_OUT, { detail: error }));
    }
    throw error;
  }
  return body;
}

/** One API call; a matching call answered asynchronously (202 + task_id) is awaited. */
export async function call(path, params = {}) {
  let body = await post(path, params);
  while (body.task_id && !body.candidates) {
    if (body.task_status === "failed") throw new ApiError(500, body.result || body);
    if (body.task_status === "done") return body.result;
    await new Promise((resolve) => setTimeout(resolve, TASK_POLL_MS));
    body = await post("info/task", { task_id: body.task_id });
  }
  return body;
}

// face_id -> Promise of a data: URL, or null where there is none to show (a face kept without
// a thumbnail, or one the account does not have). Kept for the tab: a face's crop never changes.
const thumbnails = new Map();
const THUMBNAILS_PER_CALL = 100; // the endpoint's limit
let queued = new Map(); // face_id -> {resolve, reject}, sent together once this task is done

async function fetchThumbnails(batch) {
  try {
    const body = await post("console/api/thumbnails", { face_ids: [...batch.keys()] });
    for (const [faceId, { resolve }] of batch) {
      const jpeg = body.thumbnails[faceId];
      resolve(jpeg ? `data:image/jpeg;base64,${jpeg}` : null);
    }
  } catch (error) {
    for (const [faceId, { reject }] of batch) {
      thumbnails.delete(faceId); // retried next time
      reject(error);
    }
  }
}

function flush() {
  const ids = [...queued];
  queued = new Map();
  for (let start = 0; start < ids.length; start += THUMBNAILS_PER_CALL) {
    fetchThumbnails(new Map(ids.slice(start, start + THUMBNAILS_PER_CALL)));
  }
}

/** A face's thumbnail: the faces asked for in one task (a page's render) share one call. */
export function thumbnail(faceId) {
  if (!thumbnails.has(faceId)) {
    if (!queued.size) setTimeout(flush);
    thumbnails.set(faceId, new Promise((resolve, reject) => queued.set(faceId, { resolve, reject })));
  }
  return thumbnails.get(faceId);
}

/** The largest face of a photo (detected, so stored for 5 days), with the whole answer. */
export async function largestFace(file) {
  const body = await call("face/detection", { file });
  const area = ({ rect }) => (rect.right - rect.left) * (rect.bottom - rect.top);
  const face = body.faces.reduce((best, f) => (!best || area(f) > area(best) ? f : best), null);
  if (!face) throw new ApiError(400, { status: "NO_FACE", reason: `no face found in ${file.name}` });
  return { face, body };
}

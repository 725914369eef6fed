// The REST API, with the sign-in token kept in this tab's sessionStorage.

const KEY = "cc.session";

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY)) || null;
    } catch {
      return null;
    }
  },
  save(data) {
    sessionStorage.setItem(KEY, JSON.stringify(data));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// Server time minus this browser's time, in seconds, so timers agree with the server.
export const clock = {
  offset: 0,
  now() {
    return Date.now() / 1000 + this.offset;
  },
  learn(dateHeader) {
    const server = Date.parse(dateHeader || "");
    if (Number.isNaN(server)) return;
    const skew = server / 1000 - Date.now() / 1000;
    // The Date header has one-second resolution: only trust a clear difference.
    if (Math.abs(skew) > 2) this.offset = skew;
  },
};

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = session.get()?.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "network", e.message);
  }
  clock.learn(response.headers.get("Date"));
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error || {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

export function goToLogin() {
  const next = location.pathname + location.hash;
  location.replace(`/login?next=${encodeURIComponent(next)}`);
}

// Who is signed in, or off to the sign-in page.
export async function whoAmI() {
  if (!session.get()?.token) {
    goToLogin();
    return null;
  }
  try {
    return await api("/api/v1/me");
  } catch (e) {
    if (e.status === 401) {
      session.clear();
      goToLogin();
      return null;
    }
    throw e;
  }
}

export async function signOut() {
  try {
    await api("/api/v1/logout", { method: "POST" });
  } catch {
    // Signed out locally either way; the token expires on its own.
  }
  session.clear();
  location.replace("/login");
}

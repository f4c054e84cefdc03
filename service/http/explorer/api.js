// The service's public API, as the page calls it: JSON or PNG answers, the bearer key in a header (never in a URL).

const KEY_STORE = "vae-serve-api-key"; // sessionStorage: this tab only, gone when it closes

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export class Api {
  constructor(base) {
    this.base = base; // the service's root, from the page's own address
    this.key = sessionStorage.getItem(KEY_STORE);
  }

  setKey(key) {
    this.key = key || null;
    if (this.key) sessionStorage.setItem(KEY_STORE, this.key);
    else sessionStorage.removeItem(KEY_STORE);
  }

  async call(method, path, body, accept = "application/json") {
    const headers = { accept };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    const response = await fetch(new URL(path, this.base), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        const answer = await response.json();
        if (answer.detail !== undefined) {
          detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
        }
      } catch { /* not the contract's JSON error: keep the status line */ }
      throw new ApiError(response.status, detail);
    }
    return accept === "image/png" ? response.blob() : response.json();
  }

  models() { return this.call("GET", "models"); }
  post(path, body) { return this.call("POST", path, body); }
  picture(path, body) { return this.call("POST", path, body, "image/png"); }
}

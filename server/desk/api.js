/* The desk's only way to the server: the JSON API with the token as a bearer header.
 *
 * The token lives in sessionStorage (this tab only, gone when it closes). Requests carry no
 * cookies (`credentials: "omit"`): the API knows no session, so there is nothing a forged
 * cross-site request could ride on, and nothing but this header authorises a call.
 */

var TOKEN_KEY = "avidence.desk.token";

export function token() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    return "";
  }
}

export function remember(value) {
  try {
    window.sessionStorage.setItem(TOKEN_KEY, value);
  } catch (e) {
    /* storage disabled: the token is typed again on the next load */
  }
}

export function forget() {
  try {
    window.sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    /* nothing stored */
  }
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export async function call(method, path, body, secret) {
  var headers = { Accept: "application/json", Authorization: "Bearer " + (secret || token()) };
  var init = { method: method, headers: headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  var response = await fetch(path, init);
  var data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
  }
  if (!response.ok) {
    var error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || "http_" + response.status,
      error.message || response.statusText,
      error.details
    );
  }
  return data;
}

export function get(path) {
  return call("GET", path);
}

export function post(path, body) {
  return call("POST", path, body === undefined ? {} : body);
}

export function enc(value) {
  return encodeURIComponent(value);
}

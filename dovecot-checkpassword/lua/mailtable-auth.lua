-- mailtable-auth.lua: Dovecot passdb and userdb backed by mailtable.
--
-- The script asks `dovecot-mailtable serve` over HTTP (src/http/mod.rs has
-- the API) and maps its answers to Dovecot results. It runs unchanged on
-- Dovecot 2.4 and on 2.3.19 and later, which both ship `dovecot.http.client`
-- (core@2.3.19.1 and core@2.4.1: src/lib-lua/dlua-dovecot-http.c).
--
-- Dovecot configuration: conf/auth-mailtable-lua-2.4.conf.ext (2.4:
-- `passdb lua { lua_file = ... lua_settings { ... } }` and the same for
-- userdb) and conf/auth-mailtable-lua.conf.ext (2.3: `driver = lua`,
-- `args = file=...`). tests/e2e/test-dovecot-23.sh runs the 2.3 file and
-- tests/e2e/test-dovecot-24.sh the 2.4 file (Dovecot 2.4.1 of Debian 13)
-- as written, with this script unchanged. Dovecot 2.3's Lua driver accepts only file=, blocking=,
-- cache_key= and scheme= (core@2.3.19.1:src/auth/passdb-lua.c), so there
-- the settings are the `config` defaults below: edit them in your copy if
-- yours differ. 2.4 passes its lua_settings block to script_init().
--
-- Settings:
--   url            base URL of the API. Use an IP literal: a host name
--                  needs Dovecot's dns-client socket from inside auth.
--   secret_file    file holding the bearer token (surrounding white space
--                  ignored). Read at the first lookup, by the process
--                  doing it (the auth worker: root by default on 2.3 and
--                  on 2.4.1 as Debian ships it; `dovecot` where
--                  `service auth-worker` says so), so it must be readable
--                  there: 0640 root:dovecot works for both.
--   secret         the token itself, instead of secret_file.
--   timeout_msecs  connect and request timeout (default 8000: longer than
--                  serve's own bound on a lookup, query_timeout_ms 5000 by
--                  default, so that a database held locked is answered by
--                  serve with its reason, logged by Dovecot, instead of
--                  "API unreachable: Request timed out").
--   socket_path    reach the API on a UNIX socket (serve's
--                  `http_listen = "unix:/path"`, as shipped) through the
--                  HTTP client's proxy_socket_path setting; `url` then
--                  only names the host. Dovecot 2.4 only (the shipped 2.4
--                  conf sets it): 2.3's HTTP client has no such setting,
--                  and the script refuses to start there with one. On 2.3
--                  `url` must name serve's TCP `http_listen`, on a port
--                  below 1024 (any local user can take a higher one while
--                  serve is down); the default is 127.0.0.1:787.
--
-- Requests: POST with the bearer token, and the user name and password in
-- the headers Mailtable-User and Mailtable-Password, percent-encoded
-- (every byte outside visible ASCII, and '%'), with no body. A payload would
-- cost a round trip on Dovecot 2.3: its set_payload always makes the HTTP
-- client send `Expect: 100-continue` and hold the body until the server
-- answers `100 Continue` (core@2.3.19.1:src/lib-lua/dlua-dovecot-http.c
-- passes sync=TRUE to http_client_request_set_payload, and
-- src/lib-http/http-client-request.c adds the header and waits), while a
-- request without a payload goes out in one write with Content-Length: 0.
-- (2.4's set_payload waits only when given `true` as third argument,
-- core@2.4.1:src/lib-lua/dlua-dovecot-http.c; this one form serves both.)
-- Headers and not the query string: Dovecot puts the URL in its error and
-- debug messages, never a header's value. Fields longer than
-- HEADER_FIELDS_MAX encoded bytes (serve takes a head of 8 KiB at most) go
-- in a TAB-separated body instead, as older versions of this script sent
-- every request; serve takes both forms.
--
-- The user iteration (`doveadm user '*'`, `doveadm -A`) is a POST to
-- /userdb/iterate without fields; see auth_userdb_iterate below.
--
-- Results: HTTP 200 "ok" -> OK with the returned fields; 403 "mismatch" ->
-- PASSWORD_MISMATCH; 404 "unknown" -> USER_UNKNOWN; anything else
-- (connection refused, timeout, 5xx, a 404 without the "unknown" token
-- from a wrong URL) -> INTERNAL_FAILURE, so an outage is a temporary
-- failure (IMAP "[UNAVAILABLE]", LMTP 451) and never a bounce.
--
-- Failures are not logged here: Dovecot logs the returned error string
-- itself ("passdb-lua: ...", "db-lua: ...", "userdb-lua: ...").
--
-- Every function returns two values. Dovecot 2.3 wants a string or a table
-- as the second one even for errors, 2.4 wants a table (or nil) for OK and
-- a string (or nil) for errors (core@2.3.19.1 and core@2.4.1:
-- src/auth/db-lua.c, auth_lua_call_lookup); "table on OK, string on error"
-- satisfies both.

local config = {
  url = "http://127.0.0.1:787",
  secret_file = "/etc/mailtable/dovecot-api.secret",
  secret = nil,
  timeout_msecs = 8000,
  socket_path = nil,
}
local KNOWN_SETTINGS = {
  url = true, secret_file = true, secret = true, timeout_msecs = true,
  socket_path = true,
}

local http_client = nil
local bearer = nil

-- Dovecot's tab-escaping (core@2.3.19.1:src/lib/strescape.c). Values
-- reaching Lua never contain NUL, so it needs no case here.
local ESCAPE = { ["\1"] = "\1" .. "1", ["\t"] = "\1t", ["\r"] = "\1r", ["\n"] = "\1n" }
local UNESCAPE = { ["0"] = "\0", ["1"] = "\1", t = "\t", r = "\r", n = "\n" }

local function tabescape(s)
  return (s:gsub("[\1\t\r\n]", ESCAPE))
end

-- Percent-encoding for the header form: every byte outside visible ASCII
-- (0x21-0x7e), and '%' itself, becomes %XX. The class below is "neither
-- ! to $ nor & to ~", which is visible ASCII without '%'. No byte of the
-- result can end or fold a header line.
local function pctencode(s)
  return (s:gsub("[^!-$&-~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Longest encoded user name plus password sent in headers; longer ones go
-- in a body (see "Requests" above). Leaves room in serve's 8 KiB head for
-- the request line, the token and Dovecot's own headers.
local HEADER_FIELDS_MAX = 4096

local function tabunescape(s)
  -- An unknown escape yields the character itself and a lone trailing
  -- \1 vanishes, as in Dovecot.
  return (s:gsub("\1(.?)", function(c) return UNESCAPE[c] or c end))
end

-- Builds the HTTP client. Setting names differ: 2.3 reads a fixed list of
-- *_msecs names and ignores unknown keys; 2.4 maps each key to an
-- http_client_* setting and refuses unknown ones (and `debug`). So try the
-- 2.3 names and fall back to the 2.4 ones when they are refused. Seen on
-- 2.4.1: the first call fails with "Invalid HTTP client setting:
-- max_attempts is unknown setting", the second works, and a server that
-- accepts but never answers fails the lookup (after each attempt's
-- timeout_msecs, see below).
--
-- Two attempts: serve closes a kept-alive connection that stays idle past
-- its 5 s head deadline, and a request Dovecot writes on it just then is
-- lost with the connection. Dovecot sends such a request again only while
-- attempts are left (http_client_request_try_retry in
-- src/lib-http/http-client-request.c, core@2.3.19.1 and core@2.4.1): with
-- one, the login failed temporarily for nothing. Every request here may be
-- sent twice (lookups, and a password check that changes nothing). A
-- request that gets no answer within timeout_msecs is sent again too
-- (http_client_connection_abort_temp_error retries), so a server that
-- accepts but never answers fails the lookup after twice timeout_msecs;
-- serve itself answers within its query_timeout_ms.
local function new_client()
  local ms = math.floor(tonumber(config.timeout_msecs) or 8000)
  local ok, client = pcall(dovecot.http.client, {
    user_agent = "mailtable-auth.lua",
    connect_timeout_msecs = ms,
    request_timeout_msecs = ms,
    max_attempts = 2,
  })
  if ok then
    -- Dovecot 2.3: it would ignore proxy_socket_path and connect to url.
    if config.socket_path ~= nil then
      error("mailtable-auth.lua: socket_path needs Dovecot 2.4; on 2.3 set " ..
        "socket_path = nil and url to serve's TCP http_listen (a port below 1024)")
    end
    return client
  end
  local settings = {
    user_agent = "mailtable-auth.lua",
    connect_timeout = ms .. "ms",
    request_timeout = ms .. "ms",
    request_max_attempts = 2,
  }
  if config.socket_path ~= nil then
    settings.proxy_socket_path = config.socket_path
  end
  return dovecot.http.client(settings)
end

function script_init(args)
  -- 2.3 passes no arguments, 2.4 the lua_settings block (strings).
  for key, value in pairs(args or {}) do
    if not KNOWN_SETTINGS[key] then
      error("mailtable-auth.lua: unknown setting " .. tostring(key))
    end
    config[key] = value
  end
  config.url = tostring(config.url):gsub("/+$", "")
  http_client = new_client()
  return 0
end

local function read_secret()
  if bearer ~= nil then
    return bearer
  end
  local token = config.secret
  if token == nil or token == "" then
    local f, err = io.open(config.secret_file, "r")
    if f == nil then
      return nil, "cannot read secret_file: " .. tostring(err)
    end
    token = f:read("*a") or ""
    f:close()
  end
  token = token:gsub("^%s+", "")
  token = token:gsub("%s+$", "")
  if token == "" then
    return nil, "empty API secret"
  end
  bearer = token
  return bearer
end

-- Splits a text reply "token\tkey=value\t..." into the token and a table
-- of unescaped fields.
local function parse_reply(payload)
  payload = payload:gsub("\r?\n$", "")
  local token, fields = nil, {}
  for item in (payload .. "\t"):gmatch("([^\t]*)\t") do
    if token == nil then
      token = item
    else
      local key, value = item:match("^([^=]+)=(.*)$")
      if key ~= nil then
        fields[key] = tabunescape(value)
      end
    end
  end
  return token or "", fields
end

-- Sends one request to `path`: for `user` (and `password`, for a verify),
-- or with no fields at all when `user` is nil (the iteration). Returns
-- the status and the payload, or nil and a message for the log.
local function send(path, user, password)
  local token, err = read_secret()
  if token == nil then
    return nil, err
  end
  local request = http_client:request({ url = config.url .. path, method = "POST" })
  request:add_header("Authorization", "Bearer " .. token)
  local enc_user = user and pctencode(user) or ""
  local enc_password = password and pctencode(password) or ""
  if user == nil then
    -- No fields, no payload: one write, as below.
  elseif #enc_user + #enc_password <= HEADER_FIELDS_MAX then
    -- No payload: no `Expect: 100-continue`, one round trip.
    request:add_header("Mailtable-User", enc_user)
    if password ~= nil then
      request:add_header("Mailtable-Password", enc_password)
    end
  else
    local body = "user=" .. tabescape(user)
    if password ~= nil then
      body = body .. "\tpassword=" .. tabescape(password)
    end
    request:add_header("Content-Type", "text/plain; charset=utf-8")
    request:set_payload(body)
  end
  local response = request:submit()
  local status = response:status()
  if status >= 9000 then
    -- Dovecot's own client errors (connect failed, timed out, ...) use
    -- codes from 9000 up (HTTP_RESPONSE_STATUS_INTERNAL).
    return nil, "mailtable API unreachable: " .. tostring(response:reason())
  end
  return status, response:payload() or "", response
end

-- The log message of an answer that is none of the expected ones.
local function unexpected(path, status, response, fields)
  return string.format("mailtable API %s: HTTP %d %s%s", path, status,
    tostring(response:reason()), fields.error and (": " .. fields.error) or "")
end

-- Calls one endpoint for `user` (and `password`, for a verify). Returns
-- "ok" plus fields, "mismatch", "unknown", or "fail" plus a message for
-- the log.
local function call(path, user, password)
  local status, payload, response = send(path, user, password)
  if status == nil then
    return "fail", payload
  end
  local result, fields = parse_reply(payload)
  if status == 200 and result == "ok" then
    return "ok", fields
  elseif status == 403 and result == "mismatch" then
    return "mismatch"
  elseif status == 404 and result == "unknown" then
    return "unknown"
  end
  return "fail", unexpected(path, status, response, fields)
end

function auth_password_verify(req, password)
  -- A master user's login (a master passdb with `pass = yes`): Dovecot has
  -- checked the master's own password and asks this passdb only whether
  -- the user exists and may log in; `password` is the master's, never the
  -- user's. Dovecot says so in skip_password_check (core@2.3.19.1 and
  -- core@2.4.1: src/auth/db-lua.c). The lookup's answer carries
  -- nologin=y for a disabled mailbox, which Dovecot refuses.
  if req.skip_password_check then
    local kind, r = call("/passdb/lookup", req.user)
    if kind == "ok" then
      r.password = nil
      return dovecot.auth.PASSDB_RESULT_OK, r
    elseif kind == "unknown" then
      return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
    end
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, r
  end
  local kind, r = call("/passdb/verify", req.user, password)
  if kind == "ok" then
    -- Nothing to verify afterwards; a password field here would only
    -- confuse Dovecot's passdb field handling.
    r.password = nil
    return dovecot.auth.PASSDB_RESULT_OK, r
  elseif kind == "mismatch" then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "password mismatch"
  elseif kind == "unknown" then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, r
end

-- passdb lookup without a password: doveadm auth lookup, proxying,
-- CRAM-MD5 and other credentials mechanisms. Dovecot uses
-- auth_password_verify for plaintext logins whenever it exists, so this
-- path never decides a login by itself. The API returns the stored hash as
-- password={SCHEME}...; Dovecot checks it or reports "scheme not
-- available". Nothing here returns nopassword, which would accept any
-- password if Dovecot ever verified through this function.
function auth_passdb_lookup(req)
  local kind, r = call("/passdb/lookup", req.user)
  if kind == "ok" then
    return dovecot.auth.PASSDB_RESULT_OK, r
  elseif kind == "unknown" then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
  elseif kind == "mismatch" then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "unexpected mismatch on lookup"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, r
end

function auth_userdb_lookup(req)
  local kind, r = call("/userdb/lookup", req.user)
  if kind == "ok" then
    return dovecot.auth.USERDB_RESULT_OK, r
  elseif kind == "unknown" then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such user"
  elseif kind == "mismatch" then
    return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, "unexpected mismatch on lookup"
  end
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, r
end

-- The user iteration: `doveadm user '*'` and every `doveadm -A` command
-- (core@2.3.19.1 and core@2.4.1: src/auth/db-lua.c calls this function
-- without arguments and wants a table of user names). serve answers
-- "ok" on a line of its own, then one tab-escaped name a line. A failure
-- raises an error, which Dovecot logs ("db-lua: auth_userdb_iterate
-- failed: ...") and doveadm reports: never an empty or partial list,
-- which doveadm would take for all the users there are.
function auth_userdb_iterate()
  local path = "/userdb/iterate"
  local status, payload, response = send(path, nil, nil)
  if status == nil then
    error(payload)
  end
  local users = {}
  local first = true
  for line in payload:gmatch("([^\n]*)\n") do
    if first then
      if status ~= 200 or line ~= "ok" then
        break
      end
      first = false
    else
      users[#users + 1] = tabunescape(line)
    end
  end
  if first then
    local _, fields = parse_reply(payload)
    error(unexpected(path, status, response, fields))
  end
  return users
end

function script_deinit()
end

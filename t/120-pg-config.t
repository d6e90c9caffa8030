# The PostgreSQL store's configuration: a URI selects it, the schema is
# made at start, a password in the URI never reaches a log.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';

run_tests();

__DATA__

=== TEST 1: a postgresql:// URI selects the shared store: schema at start, 202, position from the database
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files
                     zone=async_task:4m thread_pool=async_task;
    async_task_backend image gpu_image model=test-image;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- request eval
["POST /api/v1/image/async
{\"prompt\":\"one\"}",
"POST /api/v1/image/async
{\"prompt\":\"two\"}"]
--- more_headers
Content-Type: application/json
--- error_code eval
[202, 202]
--- response_body_like eval
[qr/"status":"QUEUED".*"position":0\b/, qr/"status":"QUEUED".*"position":1\b/]
--- no_error_log
[alert]
[crit]



=== TEST 2: postgres:// selects it too
--- http_config
    async_task_store postgres:///async_task?host=@PG_HOST@&user=postgres&options=-csearch_path%3D@PG_SCHEMA@
                     files=$TEST_NGINX_SERVER_ROOT/html/files;
    async_task_backend image gpu_image model=test-image;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
    }
--- request
GET /api/v1/tasks
--- error_code: 200
--- response_body_like: "tasks":\[\]
--- error_log
schema migrated to version 1
--- no_error_log
[error]
[alert]



=== TEST 3: a password in the URI (user:password@ and password=) is never logged, when the store cannot be reached either
--- http_config
    async_task_store postgresql://postgres:s3cr3tpw@/no_such_db?host=@PG_HOST@&password=s3cr3tpw&connect_timeout=2
                     files=$TEST_NGINX_SERVER_ROOT/html/files;
    async_task_backend image gpu_image model=test-image;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- must_die
--- error_log eval
qr{cannot connect to "postgresql://postgres:xxx\@/no_such_db\?host=[^"&]+&password=xxx&connect_timeout=2"}
--- no_error_log
s3cr3tpw



=== TEST 4: a password in a working store's URI is never logged, debug log included
--- http_config
    async_task_store postgresql://postgres:s3cr3tpw@/async_task?host=@PG_HOST@&password=s3cr3tpw&options=-csearch_path%3D@PG_SCHEMA@
                     files=$TEST_NGINX_SERVER_ROOT/html/files;
    async_task_backend image gpu_image model=test-image;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- log_level: debug
--- request
POST /api/v1/image/async
{"prompt":"secret-free"}
--- more_headers
Content-Type: application/json
--- error_code: 202
--- no_error_log
s3cr3tpw
[error]



=== TEST 5: a PostgreSQL store needs files=, a directory for uploads and results
--- http_config
    async_task_store @PG@;
--- must_die
--- error_log
a PostgreSQL store requires "files=", a directory for uploads and results



=== TEST 6: a node's name has no spaces or slashes
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a/b;
--- must_die
--- error_log
invalid node "node=a/b"



=== TEST 7: node= is the PostgreSQL store's only
--- http_config
    async_task_store $TEST_NGINX_SERVER_ROOT/html/tasks.sqlite node=a;
--- must_die
--- error_log
invalid parameter "node=a"



=== TEST 8: a file name in the database that is not the task's own is never opened: 503, and the log says why
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files
                     thread_pool=async_task;
    async_task_backend image gpu_image model=test-image;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::seed(AsyncTaskTest::servroot() . "/html/store/tasks.db",
    {id => '01900000-0000-7000-8000-0000000000f1', kind => 'image',
     status => 'DONE', user => 'alice', priority => 5,
     params => '{"prompt":"x"}', created_at => 1764410000000,
     finished_at => 1764410001000, result => '{"width":64}',
     file => '../../conf/nginx.conf'});
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-0000000000f1/result
--- more_headers
X-User-Id: alice
--- error_code: 503
--- error_log
names the file "../../conf/nginx.conf", not one of its own
--- no_error_log
[alert]
[crit]

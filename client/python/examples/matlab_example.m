% stimloop from MATLAB through its Python client (py.). NOT TESTED here: no MATLAB in CI.
% Needs MATLAB R2022a or later with Debian's Python, which has python3-grpcio, python3-protobuf
% and python3-numpy:   pyenv('Version', '/usr/bin/python3')   (once, before any py. call)
% and the client on Python's path: `pip install ./client/python` into that Python, or the build
% tree as below.
py.sys.path().append('/path/to/stimloop/build/client/python');
stimloop = py.importlib.import_module('stimloop');
client = stimloop.Client('127.0.0.1:50051');

% Responses to an image: MATLAB uint8 H x W x 3 in, a numpy array out, converted with double().
img = uint8(127 * ones(112, 112, 3));
r = double(client.predict('demo', py.numpy.array(img)));

% A preferred stimulus under a deadline, as a MATLAB uint8 image.
result = client.synthesize('demo', 'max', pyargs('steps', int32(200), 'deadline_ms', 250, ...
                                                  'priority', 'rig'));
stim = uint8(result.images);            % 1 x 112 x 112 x 3
imshow(squeeze(stim(1, :, :, :)));

% A closed-loop session (MonkeyLogic: present in the trial, report after it).
client.open_session('ml1', pyargs('channels', {'ch0', 'ch1'}, 'base_model', 'demo_population', ...
                                  'pool', 'demo'));
block = client.next_block('ml1', int32(4), 'pool');
ids = cell(block.stimulus_ids);
counts = zeros(numel(ids), 2);          % fill with each trial's spike counts
client.report_responses('ml1', block.stimulus_ids, py.numpy.array(counts));
client.close_session('ml1');
